"""What crosses the stages, defined once and importable without torch.

numpy, pandas, pydantic and onnxruntime only (torch is imported lazily inside the checkpoint functions).
Every stage imports from here; nothing here imports a stage, so the arrows point one way:

- :mod:`~vocalis.contracts.features`: :class:`FeatureParams`, the featurizer's parameters;
- :mod:`~vocalis.contracts.windows`: :class:`WindowSpec` (window arithmetic, window end times) and the
  short-audio rule (:func:`require_featurizable`);
- :mod:`~vocalis.contracts.card`: :class:`ModelCard`, the artifact's ``model.json`` (pydantic);
- :mod:`~vocalis.contracts.cache`: the one window-cache reader (:class:`FeatureCache`; the embedding
  cache subclasses it) and writer (:func:`write_tables`, :func:`staged_cache`), and ``SPLITS``;
- :mod:`~vocalis.contracts.run_files`: :func:`read_json_object`, how a run's side files are read;
- :mod:`~vocalis.contracts.checkpoint`: Lightning-style checkpoint save/load (the hyper-parameter contract);
- :mod:`~vocalis.contracts.discovery`: ``AUDIO_EXTENSIONS`` and :func:`find_audio_files`;
- :mod:`~vocalis.contracts.runtime`: :func:`onnx_session`, the one onnxruntime session builder;
- :mod:`~vocalis.contracts.provenance`: :func:`git_commit`;
- :mod:`~vocalis.contracts.progress`: the progress-callback types.

See docs/contracts.md.
"""
