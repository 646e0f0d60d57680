"""Artifacts changed on purpose for tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def without_embedding_output(artifact: Path, dest: Path) -> Path:
    """A copy of ``artifact`` at ``dest`` whose graph has no ``embedding`` output, as artifacts exported
    before that output existed."""
    import onnx

    shutil.copytree(artifact, dest)
    model = onnx.load(str(dest / "model.onnx"))
    keep = [o for o in model.graph.output if o.name != "embedding"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(dest / "model.onnx"))
    return dest
