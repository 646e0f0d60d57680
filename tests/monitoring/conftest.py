"""Fixtures of the monitoring tests: a really trained tiny run exported by the real exporter (which writes
the drift reference), and prediction logs filled by the real service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.monitoring import SHIFTS, fresh_clips, post_all
from support.shared import build_once

#: recordings per logged traffic set
N_TRAFFIC = 60


@pytest.fixture(scope="session")
def monitored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on 24 recordings per class (21 of them in the training split)."""
    pytest.importorskip("lightning")
    from support.runs import train_run

    return build_once(tmp_path_factory, "monitor-run", lambda d: train_run(d, clips_per_class=24, seed=3))


@pytest.fixture(scope="session")
def monitored_artifact(monitored_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported with ``export_artifact``: model.onnx, model.json and the drift reference."""
    from vocalis.export.onnx import export_artifact

    def build(folder: Path) -> Path:
        out = folder / "model"
        export_artifact(monitored_run, out)
        return out

    return build_once(tmp_path_factory, "monitor-artifact", build)


def _logged(artifact: Path, db: Path, clips_by_prefix: dict[str, list]) -> str:
    from fastapi.testclient import TestClient

    from vocalis.serving.app import create_app
    from vocalis.serving.settings import Settings

    url = f"sqlite:///{db}"
    app = create_app(Settings(model_dir=artifact, database_url=url, threads=1))
    with TestClient(app) as client:
        for prefix, clips in clips_by_prefix.items():
            post_all(client, clips, prefix)
    return url


@pytest.fixture(scope="session")
def logs(monitored_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Database URLs of prediction logs written by the real service: in-distribution and each shift."""

    def build(root: Path) -> Path:
        clean = fresh_clips(N_TRAFFIC, seed=101)
        out = {"clean": _logged(monitored_artifact, root / "clean.db", {"clean": clean})}
        for i, (name, shift) in enumerate(SHIFTS.items()):
            shifted = [shift(x) for x in fresh_clips(N_TRAFFIC, seed=200 + i)]
            out[name] = _logged(monitored_artifact, root / f"{name}.db", {name: shifted})
        (root / "urls.json").write_text(json.dumps(out))
        return root / "urls.json"

    urls: dict[str, str] = json.loads(build_once(tmp_path_factory, "logs", build).read_text())
    return urls


@pytest.fixture
def store_of() -> Iterator[object]:
    """Open prediction stores by URL; closed after the test."""
    from vocalis.serving.store import PredictionStore

    opened: list[PredictionStore] = []

    def _open(url: str) -> PredictionStore:
        opened.append(PredictionStore(url))
        return opened[-1]

    yield _open
    for s in opened:
        s.close()
