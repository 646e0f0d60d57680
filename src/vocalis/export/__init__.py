"""Export: a trained checkpoint -> a self-contained model artifact (``model.onnx`` + ``model.json``).

The ONNX graph takes raw waveform windows and holds the featurizer (:class:`vocalis.features.LogMel`), so
nothing outside the artifact computes features. Submodules:

- :mod:`vocalis.export.card`: the model card (no torch; read by prediction and serving);
- :mod:`vocalis.export.onnx`: :func:`~vocalis.export.onnx.export_artifact`, the core of ``vocalis export``;
- :mod:`vocalis.export.quantize`: int8 static quantization behind an accuracy gate;
- :mod:`vocalis.export.prune`: magnitude pruning with optional fine-tuning on cached features;
- :mod:`vocalis.export.check_windows`: real audio windows from a run's feature cache (parity,
  calibration, the int8 gate).

This package module imports nothing heavy, so ``vocalis.export.card`` stays torch-free.
"""
