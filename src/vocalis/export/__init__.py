"""Export: a trained checkpoint -> a self-contained model artifact (``model.onnx`` + ``model.json``).

The ONNX graph takes raw waveform windows and holds the featurizer (:class:`vocalis.features.LogMel`), so
nothing outside the artifact computes features. Submodules:

- :mod:`vocalis.export.onnx`: :func:`~vocalis.export.onnx.export_artifact`, the core of ``vocalis export``;
- :mod:`vocalis.export.quantize`: int8 static quantization behind an accuracy gate;
- :mod:`vocalis.export.prune`: magnitude pruning with optional fine-tuning on cached features;
- :mod:`vocalis.export.check_windows`: real audio windows from a run's feature cache (parity,
  calibration, the int8 gate);
- :mod:`vocalis.export.parity`: running a graph on windows and comparing probabilities (used by both
  ``onnx`` and ``quantize``).

The model card it writes is :class:`vocalis.contracts.card.ModelCard`, which prediction and serving read
without importing this package.
"""
