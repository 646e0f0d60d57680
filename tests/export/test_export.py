"""Export: the artifact's graph, card and metadata, parity with PyTorch, the int8 gate, failures."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from vocalis.contracts.card import ModelCard
from vocalis.errors import ArtifactError
from vocalis.export.check_windows import AudioWindows, cache_windows
from vocalis.export.onnx import build_classifier, export_artifact, featurizer_output
from vocalis.features import FeatureParams, LogMel
from vocalis.models.checkpoint import load_network

#: stated tolerances: fp32 ONNX vs PyTorch, int8 ONNX vs fp32 ONNX (max |Δprob| over classes and windows;
#: the real trainer's tiny run measured 0.14 on its 24 test windows; 2-core machine, load average ~10)
FP32_TOL = 1e-4
INT8_TOL = 0.2
#: int8 and fp32 pick the same top label on at least this share of the test windows
INT8_TOP1 = 0.9


def _test_windows(run: Path) -> AudioWindows:
    loaded = load_network(run / "checkpoints" / "best.ckpt")
    sr = loaded.features.sample_rate
    return cache_windows(
        loaded.cache_dir,
        splits=("test",),
        classes=loaded.classes,
        sample_rate=sr,
        window_samples=round(loaded.window_s * sr),
    )


def _session(artifact: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])


def _featurizer_in_graph(artifact: Path, waveforms: np.ndarray) -> np.ndarray:
    """The log-mel the exported graph computes (its featurizer's output tensor, exposed as an output)."""
    name = featurizer_output(artifact / "model.onnx")
    assert name is not None
    model = onnx.load(str(artifact / "model.onnx"))
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([name], {"waveform": waveforms})[0])


def test_artifact_graph_inputs_outputs_and_checker(fp32_artifact: Path) -> None:
    onnx.checker.check_model(str(fp32_artifact / "model.onnx"), full_check=True)
    sess = _session(fp32_artifact)
    (inp,) = sess.get_inputs()
    assert inp.name == "waveform"
    # dynamic batch and samples: a row is one window (16 000 samples) or a stream of k windows at the hop
    assert not isinstance(inp.shape[0], int) and not isinstance(inp.shape[1], int)
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "logits", "embedding"]
    card = ModelCard.load(fp32_artifact)
    assert card.stream_hop_samples == 8_000 and card.input_samples == 16_000
    rng = np.random.default_rng(4)
    stream = (rng.standard_normal((1, 16_000 + 5 * 8_000)) * 0.1).astype(np.float32)
    windows = np.stack([stream[0, j * 8_000 : j * 8_000 + 16_000] for j in range(6)])
    (per_window,) = sess.run(["probabilities"], {"waveform": windows})
    (streamed,) = sess.run(["probabilities"], {"waveform": stream})
    assert streamed.shape == per_window.shape == (6, 3)
    assert float(np.abs(streamed - per_window).max()) <= FP32_TOL
    # the export checked the stream input against the training featurizer too, and recorded it
    assert card.parity["stream"]["max_abs_diff"] <= FP32_TOL and card.parity["stream"]["n_windows"] >= 6
    # the model, its card and the drift reference of the training split (vocalis.monitoring.reference)
    assert sorted(p.name for p in fp32_artifact.iterdir()) == [
        "model.json",
        "model.onnx",
        "reference.json",
        "reference.parquet",
    ]


def test_card_fields_and_metadata(fp32_artifact: Path, trained_run: Path) -> None:
    card = json.loads((fp32_artifact / "model.json").read_text())
    fields = "name version classes sample_rate window_s hop_s features architecture metrics cache_hash"
    fields += " git_commit created vocalis_version quantization onnx_opset"
    for key in fields.split():
        assert key in card, key
    assert card["classes"] == ["alpha", "beta", "gamma"]
    assert (card["sample_rate"], card["window_s"], card["hop_s"]) == (16_000, 1.0, 0.5)
    assert card["features"]["n_mels"] == 32 and card["features"]["f_max"] == 7500.0
    assert card["architecture"] == "compact" and card["quantization"] is None and card["onnx_opset"] == 18
    assert card["optimization"]["featurizer_graph"] == "StreamLogMel(hop=8000)"  # the matmul STFT, streams
    # what the trainer wrote into the run is what the card carries
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    run_json = json.loads((trained_run / "run.json").read_text())
    assert card["metrics"]["accuracy"] == pytest.approx(run_metrics["accuracy"], abs=1e-12)
    assert card["metrics"]["macro_f1"] == pytest.approx(run_metrics["macro_f1"], abs=1e-12)
    assert card["cache_hash"] == run_json["cache_hash"] and len(card["cache_hash"]) >= 12
    assert card["git_commit"] == run_json["git_commit"]
    assert card["parity"]["max_abs_diff"] <= card["parity"]["tolerance"] == FP32_TOL
    # real cached audio of the run (the cache is named <data name>-<hash>), not synthetic windows
    assert card["parity"]["windows"].startswith(f"folder-{run_json['cache_hash'][:12]}:")
    meta = {p.key: p.value for p in onnx.load(str(fp32_artifact / "model.onnx")).metadata_props}
    assert json.loads(meta["vocalis.classes"]) == card["classes"]
    assert meta["vocalis.version"] == card["version"]
    assert json.loads(meta["vocalis.features"]) == card["features"]
    assert ModelCard.load(fp32_artifact).window_samples == 16_000


def test_fp32_parity_with_pytorch_on_test_audio(fp32_artifact: Path, trained_run: Path) -> None:
    loaded = load_network(trained_run / "checkpoints" / "best.ckpt")
    module = build_classifier(loaded)
    windows = _test_windows(trained_run)
    assert len(windows) >= 10
    with torch.no_grad():
        ref = module(torch.from_numpy(windows.waveforms))[0].numpy()
        trained_on = LogMel(loaded.features)(torch.from_numpy(windows.waveforms)).numpy()
    got = _session(fp32_artifact).run(["probabilities"], {"waveform": windows.waveforms})[0]
    assert np.abs(got - ref).max() <= FP32_TOL
    # the log-mel inside the graph (matmul STFT) is the training featurizer's (fft STFT), within the
    # 0.01 dB that test_matmul_stft_computes_what_the_fft_does states for the two forms
    in_graph = _featurizer_in_graph(fp32_artifact, windows.waveforms)
    assert in_graph.shape == trained_on.shape
    assert float(np.abs(in_graph - trained_on).max()) <= 1e-2
    assert np.mean(got.argmax(1) == windows.labels) >= 0.8  # the tiny model really learned the tones


def test_int8_artifact_within_tolerance_and_gate_recorded(
    int8_artifact: Path, fp32_artifact: Path, trained_run: Path
) -> None:
    card = json.loads((int8_artifact / "model.json").read_text())
    assert card["quantization"] == "int8" and card["version"].endswith("-int8")
    gate = card["optimization"]["int8"]
    assert gate["method"] == "static" and gate["calibration_windows"] > 0
    assert gate["accuracy_drop"] <= 0.01 and not gate["forced"]
    windows = _test_windows(trained_run)
    p8 = _session(int8_artifact).run(["probabilities"], {"waveform": windows.waveforms})[0]
    p32 = _session(fp32_artifact).run(["probabilities"], {"waveform": windows.waveforms})[0]
    assert np.abs(p8 - p32).max() <= INT8_TOL
    assert np.mean(p8.argmax(1) == p32.argmax(1)) >= INT8_TOP1
    model = onnx.load(str(int8_artifact / "model.onnx"))
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in model.graph.node)
    # the featurizer stays float: nothing upstream of its output tensor is a (de)quantization op
    producers = {o: n for n in model.graph.node for o in n.output}
    stack, ops, seen = [featurizer_output(int8_artifact / "model.onnx")], set(), set()
    assert stack[0] is not None
    while stack:  # every ancestor node once
        node = producers.get(stack.pop())
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            ops.add(node.op_type)
            stack.extend(node.input)
    assert {"Conv", "MatMul"} <= ops and not {op for op in ops if "Quant" in op or op.startswith("QLinear")}


def test_int8_gate_refuses_a_badly_calibrated_model(trained_run: Path, tmp_path: Path) -> None:
    """Calibrating on silence gives activation ranges of a constant input: accuracy collapses for real."""
    out = tmp_path / "bad"
    silence = AudioWindows(np.zeros((16, 16_000), np.float32), np.full(16, -1), "silence")
    with pytest.raises(ArtifactError, match=r"int8 accuracy .* vs fp32 .* refusing"):
        export_artifact(trained_run, out, quantize="int8", calibration=silence)
    assert not out.exists()
    assert not list(tmp_path.glob(".*staging*"))  # no half-written artifact left behind
    forced = export_artifact(trained_run, out, quantize="int8", calibration=silence, force=True)
    assert forced.quantization is not None and forced.quantization["forced"]
    assert forced.quantization["accuracy_drop"] > 0.01


@pytest.mark.slow
def test_cli_export_refuses_bad_int8_and_writes_good_fp32(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = tmp_path / "silent"
    silent.mkdir()
    sf.write(silent / "quiet.wav", np.zeros(16_000 * 4, np.float32), 16_000)
    bad = _export_cli(
        capsys, str(trained_run), "-o", str(tmp_path / "a8"), "--quantize", "int8",
        "--calibration-audio", str(silent),
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr  # a user error: one line, exit 2
    assert "int8 accuracy" in bad.stderr and "fp32" in bad.stderr and "refusing" in bad.stderr
    assert not (tmp_path / "a8").exists()
    from typer.testing import CliRunner

    from vocalis.cli import app

    good = CliRunner().invoke(
        app, ["export", str(trained_run), "-o", str(tmp_path / "a32"), "--checkpoint", "last"]
    )
    assert good.exit_code == 0, good.output
    assert "parity" in good.output and ModelCard.load(tmp_path / "a32").classes == ["alpha", "beta", "gamma"]


def test_parity_failure_is_loud(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="disagree"):
        export_artifact(trained_run, tmp_path / "x", parity_tol=-1.0)
    assert not (tmp_path / "x").exists()


def test_run_without_optional_files(trained_run: Path, tmp_path: Path) -> None:
    """A run with only a checkpoint still exports (no metrics, commit from git or None)."""
    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", bare / "checkpoints" / "last.ckpt")
    result = export_artifact(bare, tmp_path / "art", checkpoint="last")
    assert result.card.metrics == {} and result.card.name == "bare"
    with pytest.raises(ArtifactError, match="checkpoint not found"):
        export_artifact(bare, tmp_path / "art2", checkpoint="best")
    with pytest.raises(ArtifactError, match="no such run"):
        export_artifact(tmp_path / "missing", tmp_path / "art3")
    (bare / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        export_artifact(bare, tmp_path / "art4")


@pytest.mark.parametrize(
    "params",
    [
        FeatureParams(),
        FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=32, f_max=7500.0),
        FeatureParams(sample_rate=44_100, n_fft=2048, hop_length=441, n_mels=128, f_max=20_000.0),
    ],
)
def test_matmul_stft_computes_what_the_fft_does(params: FeatureParams) -> None:
    """LogMel's two STFT forms (matmul in the graph, fft in training) agree within 0.01 dB on noise, silence,
    a loud click and a pure tone (both are float32 sums in a different order: measured ~2e-5 dB near 0 dB,
    up to 2.5e-3 dB in the cells 80 dB below a click's peak)."""
    n = params.sample_rate  # one second
    rng = np.random.default_rng(0)
    t = np.arange(n) / params.sample_rate
    x = np.stack(
        [
            rng.standard_normal(n) * 0.1,
            np.zeros(n),
            np.where(np.arange(n) == n // 3, 1.0, 0.0) + rng.standard_normal(n) * 1e-4,
            np.sin(2 * np.pi * 1234.5 * t),
        ]
    ).astype(np.float32)
    with torch.no_grad():
        ref = LogMel(params)(torch.from_numpy(x))
        got = LogMel(params, stft="matmul")(torch.from_numpy(x))
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-2


@dataclass(frozen=True)
class CliResult:
    """What ``vocalis export`` ended with: exit status and the text it wrote."""

    returncode: int
    stdout: str
    stderr: str


def _export_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """``vocalis export ARGS`` through the console script's entry point, in this process: the same error
    handling (one line, exit 2) as the installed command, without a fresh interpreter importing torch for
    every call (the console script itself, in a subprocess, is tested in tests/test_cli.py)."""
    from vocalis.cli import main

    capsys.readouterr()  # only this command's output
    with pytest.raises(SystemExit) as ended:
        main(["export", *args])
    out = capsys.readouterr()
    code = ended.value.code
    return CliResult(code if isinstance(code, int) else int(code is not None), out.out, out.err)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_refuses_a_folder_that_is_not_an_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o` a folder with the user's files: one line, exit 2, every file still there byte for byte (the
    check runs before the run is even read, so a missing run does not matter here)."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "thesis.tex").write_text("years of work")
    (home / "notes" / "a.txt").write_text("more")
    (home / "model.json").write_text("{}")  # looks a bit like an artifact, but holds other things
    (home / "model.onnx").write_bytes(b"x")
    before = _tree(home)
    for extra in ([], ["--overwrite"]):
        res = _export_cli(capsys, str(tmp_path / "no-run"), "-o", str(home), *extra)
        assert res.returncode == 2, res.stderr
        assert "not a vocalis artifact" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert _tree(home) == before
    (tmp_path / "plain").write_text("a file")
    res = _export_cli(capsys, str(tmp_path / "no-run"), "-o", str(tmp_path / "plain"))
    assert res.returncode == 2 and "not a folder" in res.stderr
    assert (tmp_path / "plain").read_text() == "a file"
    assert not list(tmp_path.glob(".*staging*")) and not list(tmp_path.glob(".*old-*"))


@pytest.mark.slow
def test_export_replaces_an_artifact_only_with_overwrite(
    trained_run: Path, fp32_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "art"
    shutil.copytree(fp32_artifact, out)  # an artifact the exporter wrote from this run (session fixture)
    assert ModelCard.load(out).version == ModelCard.load(fp32_artifact).version
    stamp = (out / "model.onnx").stat().st_mtime_ns
    res = _export_cli(capsys, str(trained_run), "-o", str(out))
    assert res.returncode == 2 and "--overwrite" in res.stderr, res.stderr
    assert (out / "model.onnx").stat().st_mtime_ns == stamp  # untouched
    res = _export_cli(capsys, str(trained_run), "-o", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert (out / "model.onnx").stat().st_mtime_ns != stamp  # replaced
    assert ModelCard.load(out).classes == ["alpha", "beta", "gamma"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging or old copy left


def test_an_artifact_folder_is_refused_without_overwrite_and_swapped_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing artifact: refused without --overwrite (untouched); with it, the new folder takes its
    place by rename and the old one is gone, with no temporary sibling left."""
    from vocalis.export.onnx import _replace_dir

    out = tmp_path / "art"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old model")
    (out / "model.json").write_text("{}")
    res = _export_cli(capsys, str(tmp_path / "no-run"), "-o", str(out))
    assert res.returncode == 2 and "--overwrite" in res.stderr, res.stderr
    assert (out / "model.onnx").read_bytes() == b"old model"
    new = tmp_path / ".art.staging-x"
    new.mkdir()
    (new / "model.onnx").write_bytes(b"new model")
    (new / "model.json").write_text("{}")
    _replace_dir(new, out, overwrite=True)
    assert (out / "model.onnx").read_bytes() == b"new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_last_checkpoint_gets_no_metrics_of_the_best(tmp_path: Path) -> None:
    """metrics.json evaluates best.ckpt: exporting last.ckpt must not put those figures in its card."""
    from vocalis.export.onnx import resolve_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    best = run / "checkpoints" / "best.ckpt"
    (run / "metrics.json").write_text(json.dumps({"split": "test", "accuracy": 0.9, "checkpoint": str(best)}))
    assert resolve_run(run).metrics["accuracy"] == 0.9
    assert resolve_run(best).metrics["accuracy"] == 0.9
    assert resolve_run(run, "last").metrics == {}
    assert resolve_run(run / "checkpoints" / "last.ckpt").metrics == {}
