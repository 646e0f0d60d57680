"""A vocalis artifact as a transfer backbone, end to end on real parts: the session's tiny trained run
exported by the real exporter is the backbone; real WAV files under new class names are embedded through
its ``embedding`` output into a real embedding cache; a scikit-learn head is fitted; ``vocalis export``
writes one ONNX graph (the artifact's graph up to ``embedding`` + the head); ``vocalis predict`` runs it.

Tolerances: parity between the composed graph and the backbone + head run separately is asked at 1e-5
(float32 in onnxruntime vs numpy: the same arithmetic in another order); the embedding output must equal
the source artifact's to 1e-5 (the same nodes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from support.artifacts import without_embedding_output
from support.runs import HOP_S, SR, WINDOW_S, write_calls

runner = CliRunner()
#: the tiny run's three tone bands under the names of "new species" the artifact was not trained on
RENAMED = {"alpha": "low_call", "beta": "mid_call", "gamma": "high_call"}


def _overrides(root: Path, artifact: Path) -> list[str]:
    return [
        "experiment=transfer_artifact",
        f"paths.root_dir={root}",
        f"data.root={root / 'calls'}",
        f"backbone.path={artifact}",
        f"data.window_s={WINDOW_S}",
        f"data.hop_s={HOP_S}",
        "data.split.val=0.2",
        "data.split.test=0.2",
        "data.prepare_workers=1",
        "head.C=[1.0]",
        "logger=none",
    ]


@pytest.fixture(scope="module")
def head_run(fp32_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """New recordings (another seed) under new class names -> embedding cache -> head -> composed artifact."""
    from vocalis.cli import app
    from vocalis.configs import compose_config
    from vocalis.transfer.train import train_transfer

    root = tmp_path_factory.mktemp("head-on-artifact")
    write_calls(root / "calls", clips_per_class=8, seed=11)
    for old, new in RENAMED.items():
        (root / "calls" / old).rename(root / "calls" / new)
    (root / "calls" / "low_call" / "broken.wav").write_bytes(b"RIFF....not audio")
    cfg = compose_config([*_overrides(root, fp32_artifact), f"run_dir={root / 'runs' / 'head'}"])
    result = train_transfer(cfg)
    art = root / "artifact"
    out = runner.invoke(app, ["export", str(result.run_dir), "-o", str(art)])  # what `vocalis export` runs
    assert out.exit_code == 0, out.output + repr(out.exception)
    assert "artifact:" in out.output  # the table names the backbone
    return {"root": root, "run": result.run_dir, "artifact": art, "cache": result.cache_dir}


def test_the_head_learns_new_classes_on_the_artifacts_embedding(
    head_run: dict[str, Path], fp32_artifact: Path
) -> None:
    from vocalis.transfer.cache import EmbeddingCache

    info = json.loads((head_run["run"] / "transfer.json").read_text())
    card = json.loads((fp32_artifact / "model.json").read_text())
    assert info["backbone"]["name"] == f"artifact:{card['name']}"
    assert info["backbone_artifact"] == str(fp32_artifact.resolve())
    cache = EmbeddingCache.open(head_run["cache"])
    assert cache.classes == sorted(RENAMED.values())
    assert cache.meta["n_skipped"] == 1  # the undecodable file is reported, not fatal
    assert cache.embeddings.shape[1] == info["backbone"]["embedding_dim"] > 0
    metrics = json.loads((head_run["run"] / "metrics.json").read_text())
    # three well separated bands that the backbone network was trained to tell apart (chance: 1/3)
    assert metrics["accuracy"] >= 0.8, metrics["accuracy"]


def test_export_is_one_onnx_graph_matching_backbone_plus_head(
    head_run: dict[str, Path], fp32_artifact: Path
) -> None:
    import onnx

    from vocalis.contracts.runtime import onnx_session
    from vocalis.transfer.backbones import OnnxEmbedder
    from vocalis.transfer.export import parity_windows
    from vocalis.transfer.heads import Head

    art = head_run["artifact"]
    assert sorted(p.name for p in art.iterdir()) == ["model.json", "model.onnx"]  # self-contained
    model = onnx.load(str(art / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["waveform"]
    assert [o.name for o in model.graph.output] == ["probabilities", "logits", "embedding"]
    card = json.loads((art / "model.json").read_text())
    src = json.loads((fp32_artifact / "model.json").read_text())
    assert card["classes"] == sorted(RENAMED.values())
    assert card["features"] == src["features"] and card["sample_rate"] == src["sample_rate"] == SR
    assert card["backbone"]["artifact_version"] == src["version"]
    assert card["architecture"] == f"{src['architecture']}+logistic"
    assert card["parity"]["max_abs_diff"] <= 1e-4 and card["parity"]["windows"] == "cache"
    # parity, measured here again: the one graph vs the source artifact's embedding + the head in numpy
    windows, kind = parity_windows(head_run["cache"], SR, round(WINDOW_S * SR), 24)
    assert len(windows) == 24 and kind == "cache"
    probs, emb = onnx_session(art / "model.onnx", 1).run(
        ["probabilities", "embedding"], {"waveform": windows}
    )
    backbone = OnnxEmbedder.from_artifact(fp32_artifact, threads=1)
    want_emb = backbone.embed(windows)
    want = Head.load(head_run["run"] / "checkpoints" / "head.npz").probabilities(want_emb)
    assert float(np.abs(emb - want_emb).max()) <= 1e-5
    assert float(np.abs(probs - want).max()) <= 1e-5
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_runs_the_composed_artifact(
    head_run: dict[str, Path], fp32_artifact: Path, tmp_path: Path
) -> None:
    from vocalis import audio
    from vocalis.cli import app
    from vocalis.inference import Predictor
    from vocalis.transfer.backbones import OnnxEmbedder
    from vocalis.transfer.heads import Head

    calls = head_run["root"] / "calls"
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(head_run["artifact"]), str(calls), "-r", "-o", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = pd.read_csv(out)
    assert set(rows["label"]) <= set(RENAMED.values()) and len(rows) > 0
    # a recording's windows through Predictor: the majority label is its folder's on most files
    predictor = Predictor.from_dir(head_run["artifact"], threads=1)
    assert predictor.has_embedding
    # Predictor's windows (as a stream when the source artifact takes streams) = backbone + head per window
    clip = sorted(calls.rglob("*.wav"))[1]
    spec = predictor.window_spec()
    want = Head.load(head_run["run"] / "checkpoints" / "head.npz").probabilities(
        OnnxEmbedder.from_artifact(fp32_artifact, threads=1).embed(spec.cut(audio.load(clip, SR)))
    )
    assert float(np.abs(predictor.predict(clip).probabilities() - want).max()) <= 1e-4
    files = sorted(calls.rglob("*_[0-9].wav"))
    right = sum(
        predictor.classes[int(predictor.predict(f).probabilities().mean(axis=0).argmax())] == f.parent.name
        for f in files
    )
    assert right / len(files) >= 0.8, (right, len(files))


def test_few_shot_draws_the_same_recordings_from_feature_and_embedding_caches(
    head_run: dict[str, Path],
) -> None:
    """The same data config and seed: a from-scratch run's feature cache and a transfer head's embedding
    cache keep the same recordings under ``data.max_per_class`` (one shared draw)."""
    from vocalis.configs import compose_config
    from vocalis.data.splits import few_shot_indices
    from vocalis.training.train import prepare_data
    from vocalis.transfer.cache import EmbeddingCache

    root = head_run["root"]
    feats = prepare_data(
        compose_config(
            [
                "experiment=folder_cpu",
                f"paths.root_dir={root}",
                f"data.root={root / 'calls'}",
                f"data.window_s={WINDOW_S}",
                f"data.hop_s={HOP_S}",
                "data.split.val=0.2",
                "data.split.test=0.2",
                "data.prepare_workers=1",
            ]
        )
    )
    emb = EmbeddingCache.open(head_run["cache"])

    def recordings(m: pd.DataFrame, n: int, seed: int) -> dict[str, set[str]]:
        idx = m.set_index("index")
        return {s: set(idx.loc[rows]["clip_id"]) for s, rows in few_shot_indices(m, n, seed).items()}

    for seed in range(3):
        picked = recordings(feats.manifest, 2, seed)
        assert picked == recordings(emb.manifest, 2, seed)
        assert all(len(picked[s]) > 0 for s in ("train", "val", "test"))


def test_backbone_artifact_without_a_path_is_a_clear_error(tmp_path: Path) -> None:
    from vocalis.configs import compose_config
    from vocalis.errors import ConfigError
    from vocalis.transfer.train import embed_data

    cfg = compose_config(
        ["experiment=transfer_artifact", f"data.root={tmp_path}", f"paths.root_dir={tmp_path}"]
    )
    with pytest.raises(ConfigError, match=r"backbone\.path"):
        embed_data(cfg)


def test_an_artifact_without_embedding_output_is_refused(fp32_artifact: Path, tmp_path: Path) -> None:
    from vocalis.errors import ArtifactError
    from vocalis.transfer.backbones import load_backbone

    old = without_embedding_output(fp32_artifact, tmp_path / "old")
    with pytest.raises(ArtifactError, match="no 'embedding' output"):
        load_backbone(old)


def test_parity_falls_back_to_noise_windows_when_the_audio_is_gone(
    head_run: dict[str, Path], tmp_path: Path
) -> None:
    """An embedding cache whose recordings moved away: four noise windows, said to be synthetic."""
    from vocalis.transfer.export import parity_windows

    cache = tmp_path / "cache"
    shutil.copytree(head_run["cache"], cache)
    manifest = pd.read_csv(cache / "manifest.csv")
    manifest["path"] = [str(tmp_path / "gone" / f"{i}.wav") for i in range(len(manifest))]
    manifest.to_csv(cache / "manifest.csv", index=False)
    windows, kind = parity_windows(cache, SR, round(WINDOW_S * SR), 24)
    assert kind == "synthetic" and windows.shape == (4, round(WINDOW_S * SR))
    assert float(np.abs(windows).max()) > 0
