"""The torch-free Predictor: loading, window arithmetic, sources, streaming, memory, and no torch import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.runs import SR, call
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import ArtifactError, AudioTooShortError, ConfigError
from vocalis.inference import Predictor

#: predictions through different paths of the same samples: max |Δprob|
SAME_TOL = 1e-5
#: streaming vs whole-file when the file is resampled (soxr stream vs one-shot differ at block edges)
RESAMPLED_TOL = 2e-3


def _recording(
    path: Path, labels: list[str], seconds_each: float = 2.0, sr: int = SR, channels: int = 1
) -> Path:
    rng = np.random.default_rng(7)
    wave = np.concatenate([call(label, seconds_each, sr, rng) for label in labels])
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(path, data, sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def predictor(artifact: Path) -> Predictor:
    return Predictor.from_dir(artifact, threads=1)


def test_facts_from_the_card(predictor: Predictor) -> None:
    assert predictor.classes == ["alpha", "beta", "gamma"]
    assert predictor.sample_rate == SR
    assert predictor.version and predictor.card.window_s == 1.0 and predictor.card["hop_s"] == 0.5


def test_window_arithmetic_and_padding(predictor: Predictor) -> None:
    wave = np.random.default_rng(0).standard_normal(int(2.3 * SR)).astype(np.float32) * 0.1
    fp = predictor.predict(wave, hop_s=0.5, top_k=3)
    assert [round(w.start_s, 6) for w in fp.windows] == [0.0, 0.5, 1.0, 1.5]
    assert [round(w.end_s, 6) for w in fp.windows] == [1.0, 1.5, 2.0, 2.3]  # last ends at the audio's end
    # the padded last window is exactly WindowSpec's zero-padded cut
    spec = WindowSpec(1.0, 0.5, SR)
    direct = predictor.predict_windows(spec.cut(wave))
    assert np.abs(fp.probabilities() - direct).max() <= SAME_TOL
    # hop longer than the window: gaps, still one window per hop
    sparse = predictor.predict(wave, hop_s=1.5)
    assert [(w.start_s, w.end_s) for w in sparse.windows] == [(0.0, 1.0), (1.5, 2.3)]
    short = predictor.predict(wave[: int(0.3 * SR)])
    assert len(short.windows) == 1 and short.windows[0].end_s == pytest.approx(0.3)
    assert fp.duration_s == pytest.approx(2.3) and fp.channels == 1 and fp.sample_rate == SR


def test_window_override_must_match_the_model(predictor: Predictor) -> None:
    wave = np.zeros(SR * 2, np.float32)
    assert len(predictor.predict(wave, window_s=1.0).windows) == 3
    with pytest.raises(ConfigError, match="trained on 1 s windows"):
        predictor.predict(wave, window_s=2.0)
    with pytest.raises(ConfigError, match="hop"):
        predictor.predict(wave, hop_s=0.0)


def test_top_k_min_conf_and_summary(predictor: Predictor, tmp_path: Path) -> None:
    path = _recording(tmp_path / "ab.wav", ["alpha", "alpha", "gamma", "gamma"])
    fp = predictor.predict(path, top_k=2, min_conf=0.0)
    assert all(len(w.top) == 2 and w.top[0][1] >= w.top[1][1] for w in fp.windows)
    labels = [w.top[0][0] for w in fp.windows]
    assert labels[0] == "alpha" and labels[-1] == "gamma"  # it hears what was played
    probs = fp.probabilities()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert fp.summary.max_probs["gamma"] == pytest.approx(probs[:, 2].max())
    assert fp.summary.mean_probs["alpha"] == pytest.approx(probs[:, 0].mean())
    assert fp.summary.top_label in ("alpha", "gamma")
    strict = predictor.predict(path, top_k=3, min_conf=0.9)
    assert all(all(p >= 0.9 for _, p in w.top) for w in strict.windows)
    assert any(len(w.top) < 3 for w in strict.windows)


def test_sources_path_bytes_stereo_and_resampling(predictor: Predictor, tmp_path: Path) -> None:
    mono16k = _recording(tmp_path / "m.wav", ["beta", "alpha"])
    by_path = predictor.predict(mono16k)
    by_bytes = predictor.predict(mono16k.read_bytes(), name="upload.wav")
    assert by_bytes.file == "upload.wav"
    assert np.abs(by_path.probabilities() - by_bytes.probabilities()).max() <= SAME_TOL
    stereo = _recording(tmp_path / "s.flac", ["beta", "alpha"], sr=44_100, channels=2)
    fp = predictor.predict(stereo)
    assert (fp.sample_rate, fp.channels) == (44_100, 2)
    assert [w.top[0][0] for w in fp.windows][:2] == ["beta", "beta"]


def test_stream_equals_whole_file(predictor: Predictor, tmp_path: Path) -> None:
    path = _recording(tmp_path / "long.wav", ["alpha", "beta", "gamma"] * 3, seconds_each=1.7)
    whole = predictor.predict(path, hop_s=0.3)
    streamed = predictor.predict_stream(path, hop_s=0.3, block_s=0.77)  # windows straddle many blocks
    assert [(w.start_s, w.end_s) for w in streamed.windows] == [(w.start_s, w.end_s) for w in whole.windows]
    assert np.abs(streamed.probabilities() - whole.probabilities()).max() <= SAME_TOL
    assert streamed.summary.top_label == whole.summary.top_label
    assert streamed.duration_s == pytest.approx(whole.duration_s)
    wide = predictor.predict_stream(path, hop_s=1.3, block_s=0.5)  # hop > window > block
    assert [round(w.start_s, 6) for w in wide.windows] == [
        round(w.start_s, 6) for w in predictor.predict(path, hop_s=1.3).windows
    ]
    resampled = _recording(tmp_path / "r.wav", ["gamma", "alpha"] * 2, sr=22_050)
    a, b = predictor.predict(resampled), predictor.predict_stream(resampled, block_s=0.9)
    assert len(a.windows) == len(b.windows)
    assert np.abs(a.probabilities() - b.probabilities()).max() <= RESAMPLED_TOL


def test_a_click_is_padded_and_only_empty_audio_refused(predictor: Predictor, tmp_path: Path) -> None:
    """The one short-audio rule: a 33 ms click (as training accepts it) gives one zero-padded window."""
    click = call("gamma", 0.033, SR, np.random.default_rng(3))
    path = tmp_path / "click.wav"
    sf.write(path, click, SR, subtype="PCM_16")
    for fp in (predictor.predict(path), predictor.predict_stream(path)):
        assert len(fp.windows) == 1 and fp.windows[0].end_s == pytest.approx(len(click) / SR, abs=1e-6)
    direct = predictor.predict_windows(WindowSpec(1.0, 0.5, SR).cut(click))
    assert np.abs(predictor.predict(click).probabilities() - direct).max() <= SAME_TOL
    with pytest.raises(AudioTooShortError, match="too short"):
        predictor.predict(np.zeros(0, np.float32), name="empty")


def test_artifact_errors(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        Predictor.from_dir(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Predictor.from_dir(broken)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a readable JSON model card"):
        Predictor.from_dir(broken)
    (broken / "model.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(ArtifactError, match="lacks the fields"):
        Predictor.from_dir(broken)
    (broken / "model.json").unlink()
    with pytest.raises(ArtifactError, match="model card not found"):
        Predictor.from_dir(broken)
    mismatch = tmp_path / "mismatch"
    shutil.copytree(artifact, mismatch)
    card = json.loads((mismatch / "model.json").read_text())
    card.update(window_s=2.0, input_samples=None)
    (mismatch / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="samples per window"):
        Predictor.from_dir(mismatch)


def test_predictor_never_imports_torch(artifact: Path, tmp_path: Path) -> None:
    path = _recording(tmp_path / "t.wav", ["alpha"])
    code = textwrap.dedent(
        f"""
        import sys
        from vocalis.inference import Predictor
        p = Predictor.from_dir({str(artifact)!r})
        fp = p.predict({str(path)!r})
        fs = p.predict_stream({str(path)!r})
        assert fp.windows and fs.windows
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        bad += sorted(m for m in sys.modules if m.startswith("vocalis.export"))
        print("TORCH:" + ",".join(bad))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TORCH:\n" in out.stdout  # an empty list of torch modules


@pytest.mark.slow
def test_long_file_streams_in_bounded_memory(artifact: Path, tmp_path: Path) -> None:
    """20 minutes of audio (77 MB as float32) predicted with the RSS growing by far less than that."""
    path = tmp_path / "long.wav"
    minutes = 20
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as out:
        rng = np.random.default_rng(3)
        for _ in range(minutes):
            out.write((rng.standard_normal(SR * 60) * 0.05).astype(np.float32))
    code = textwrap.dedent(
        f"""
        import resource, numpy as np
        from vocalis.inference import Predictor
        p = Predictor.from_dir({str(artifact)!r}, threads=2)
        p.predict(np.zeros(16000 * 30, np.float32))  # warm up: onnxruntime arenas, the first batches
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fp = p.predict_stream({str(path)!r}, hop_s=1.0, block_s=30.0)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(fp.windows), (after - before) / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n_windows, delta_mb = out.stdout.split()
    assert int(n_windows) == minutes * 60
    # the whole file as float32 is 77 MB; streaming keeps a 30 s block (2 MB) and one batch
    assert float(delta_mb) < 25, f"peak RSS grew by {delta_mb} MB"


def test_streamed_windows_equal_windows_one_by_one_and_a_card_without_streams(
    artifact: Path, tmp_path: Path
) -> None:
    """A graph that takes streams gets each batch of consecutive windows as one stream; the same artifact
    read with a card that does not say so (as exported before streams) gets one window a row. Same
    probabilities; a hop off the stream's hop falls back to one window a row."""
    new = Predictor.from_dir(artifact, threads=1, batch_size=5)
    assert new.card.stream_hop_samples == SR // 2
    old_dir = tmp_path / "no-streams"
    shutil.copytree(artifact, old_dir)
    card = json.loads((old_dir / "model.json").read_text())
    del card["stream_hop_samples"]
    (old_dir / "model.json").write_text(json.dumps(card))
    old = Predictor.from_dir(old_dir, threads=1, batch_size=5)
    assert old.card.stream_hop_samples is None
    wave = np.concatenate(
        [call(c, 1.3, SR, np.random.default_rng(2)) for c in ["beta", "alpha", "gamma"] * 4]
    )
    path = tmp_path / "calls.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    for hop in (None, 0.25):
        a, b = new.predict(wave, hop_s=hop), old.predict(wave, hop_s=hop)
        assert len(a.windows) == len(b.windows) > 5
        assert np.abs(a.probabilities() - b.probabilities()).max() <= SAME_TOL
        c = new.predict_stream(path, hop_s=hop, block_s=0.7)
        assert np.abs(c.probabilities() - b.probabilities()).max() <= SAME_TOL
