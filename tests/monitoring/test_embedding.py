"""The penultimate-layer embedding: a third ONNX output (fp32 and int8), returned by the Predictor from the
same session run, stored in the reference and the prediction log as a projection, and tested for drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support.artifacts import without_embedding_output
from support.monitoring import SHIFTS

SR = 16_000


def _windows(n: int = 6, seed: int = 0) -> np.ndarray:
    from support.runs import CLASSES, call

    rng = np.random.default_rng(seed)
    return np.stack([call(CLASSES[i % 3], 1.0, SR, rng)[:SR] for i in range(n)]).astype(np.float32)


def _outputs(artifact: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"waveform": x}), strict=True))


def test_export_adds_the_penultimate_layer_as_output(
    fp32_artifact: Path, int8_artifact: Path, trained_run: Path
) -> None:
    import torch

    from vocalis.export.onnx import build_classifier
    from vocalis.models.checkpoint import load_network

    x = _windows()
    fp32 = _outputs(fp32_artifact, x)
    assert list(fp32) == ["probabilities", "logits", "embedding"]
    loaded = load_network(trained_run / "checkpoints" / "best.ckpt")
    module = build_classifier(loaded)
    with torch.no_grad():
        _probs, logits, emb = module(torch.from_numpy(x))
        # the embedding is the layer the head reads: the network's own forward gives the same logits
        torch.testing.assert_close(loaded.net(module.featurizer(torch.from_numpy(x))), logits)
    assert fp32["embedding"].shape == (len(x), emb.shape[1]) and fp32["embedding"].dtype == np.float32
    # onnxruntime (matmul STFT in the graph) against PyTorch (fft STFT): float32 rounding of 0.01 dB
    np.testing.assert_allclose(fp32["embedding"], emb.numpy(), rtol=1e-3, atol=1e-3)
    # int8 keeps the output; its values follow fp32's (quantization noise, not another layer)
    int8 = _outputs(int8_artifact, x)
    assert int8["embedding"].shape == fp32["embedding"].shape
    r = np.corrcoef(int8["embedding"].ravel(), fp32["embedding"].ravel())[0, 1]
    assert r > 0.95, r


def test_predictor_returns_the_embedding_from_the_same_run(fp32_artifact: Path) -> None:
    from vocalis.inference import Predictor

    predictor = Predictor.from_dir(fp32_artifact)
    assert predictor.has_embedding
    wave = np.concatenate(list(_windows(3, seed=4)))  # 3 s: five windows at hop 0.5 s
    plain = predictor.predict(wave)
    fp = predictor.predict(wave, embedding=True)
    assert plain.embedding is None
    np.testing.assert_array_equal(fp.probabilities(), plain.probabilities())  # same runs, same numbers
    windows = predictor.window_spec().cut(wave)
    probs, emb = predictor.predict_windows_embedded(windows)
    np.testing.assert_array_equal(probs, plain.probabilities())
    assert fp.embedding is not None
    np.testing.assert_allclose(fp.embedding, emb.mean(axis=0), rtol=1e-6)


def test_an_artifact_without_the_output_keeps_working(fp32_artifact: Path, tmp_path: Path) -> None:
    from vocalis.errors import ArtifactError
    from vocalis.inference import Predictor
    from vocalis.monitoring.embedding import EMBEDDING_COLUMNS
    from vocalis.monitoring.reference import traffic_row

    old = without_embedding_output(fp32_artifact, tmp_path / "old")
    predictor = Predictor.from_dir(old)
    assert not predictor.has_embedding
    wave = _windows(1)[0]
    new = Predictor.from_dir(fp32_artifact).predict(wave)
    np.testing.assert_allclose(predictor.predict(wave).probabilities(), new.probabilities(), atol=1e-6)
    with pytest.raises(ArtifactError, match="no 'embedding' output"):
        predictor.predict(wave, embedding=True)
    row, width = traffic_row(predictor, wave)
    assert width == 0 and not set(EMBEDDING_COLUMNS) & set(row)


def test_reference_and_log_carry_the_projected_embedding(
    monitored_artifact: Path, logs: dict[str, str], store_of
) -> None:
    from vocalis.monitoring.embedding import EMBEDDING_COLUMNS, EMBEDDING_DIMS
    from vocalis.monitoring.reference import load_reference

    ref = load_reference(monitored_artifact)
    assert (
        ref.meta["embedding"]["dims"] == EMBEDDING_DIMS
        and ref.meta["embedding"]["input_dims"] > EMBEDDING_DIMS
    )
    assert ref.frame[list(EMBEDDING_COLUMNS)].notna().all().all()
    rows = store_of(logs["clean"]).rows()
    assert len(rows) == 60 and all(len(r["embedding"]) == EMBEDDING_DIMS for r in rows)
    # the coordinates spread: a projection of a real embedding, not a constant
    assert ref.frame[list(EMBEDDING_COLUMNS)].std().min() > 0


def test_embedding_drift_fires_on_shifted_traffic_only(
    monitored_artifact: Path, logs: dict[str, str], store_of
) -> None:
    from vocalis.monitoring.drift import drift_for_artifact, make_window

    def embedding_test(url: str) -> tuple[object, list[dict]]:
        result = drift_for_artifact(monitored_artifact, store_of(url), make_window(last=60), engine="scipy")
        assert result.embedding["tested"] is True
        (group,) = [t for t in result.tests if t.kind == "embedding"]
        coords = result.embedding["coordinates"]
        assert len(coords) == 8 and len(result.tests) == 8  # one vote in the share, not eight
        # the group's p-value is the Bonferroni bound of its coordinates'
        assert group.p_value == pytest.approx(min(1.0, 8 * min(c["p_value"] for c in coords)), rel=1e-9)
        return group, coords

    group, coords = embedding_test(logs["clean"])
    assert not group.drifted and sum(c["p_value"] < 0.05 for c in coords) <= 1, coords
    for shift in SHIFTS:
        group, coords = embedding_test(logs[shift])
        assert group.drifted and sum(c["p_value"] < 0.05 for c in coords) >= 6, (shift, coords)


def test_rows_logged_without_embedding_leave_it_out(
    monitored_artifact: Path, logs: dict[str, str], store_of
) -> None:
    from vocalis.monitoring.drift import compute_drift
    from vocalis.monitoring.reference import load_reference

    frame = pd.DataFrame(store_of(logs["clean"]).rows())
    frame["embedding"] = None  # as rows logged before revision 0003, or by a model without the output
    result = compute_drift(load_reference(monitored_artifact), frame, engine="scipy")
    assert result.embedding["tested"] is False and result.embedding["rows"]["current"] == 0
    assert {t.kind for t in result.tests} == {"data", "prediction"} and len(result.tests) == 7
    assert result.to_dict()["embedding"]["tested"] is False
