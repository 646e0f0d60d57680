"""Inference speed, side by side in one run: PyTorch eager vs ONNX fp32 vs ONNX int8 (and pruned, compiled).

First the featurizer: every exact DFT form onnxruntime runs (the plain DFT matmul, the factored DFT of
earlier versions and now, the ONNX ``STFT`` and ``DFT`` operators), window by window and as a stream whose
frames the overlapping windows share; then ``vocalis predict`` on an hour of 32 kHz audio through the demo
artifact, "before" (the code of commit ``--before`` (default 232c589), from ``git archive``: its exporter
and its ``vocalis predict``) and "after" (this checkout), ``--repeats`` times interleaved, in seconds per
hour of audio (wall and CPU time).

    uv run python benchmarks/bench_inference.py --quick      # only the before/after hour (~2-3 min idle)

For the demo network (compact, 3 s windows at 32 kHz) and ResNet34 (the WMMS set-up, 11.67 s windows),
random weights unless ``--run`` gives a trained demo run (then accuracies on its test windows too):

- windows per second at a fixed batch, on ``--threads`` cores, for each variant, and the ratios;
- FLOPs per window (torch.utils.flop_counter: convolutions and matrix products) of the featurizer and the
  network, and the achieved fraction of the machine's fp32 matmul peak (a large sgemm measured here);
- the featurizer's share of the ONNX model's time (the featurizer graph alone vs the whole graph);
- size on disk of each ONNX variant;
- ``vocalis predict`` on a generated recording (``--minutes``, default 60): wall time, real-time factor and
  peak RSS (``/usr/bin/time -v``), per model.

    uv run python benchmarks/bench_inference.py [--run runs/demo] [--minutes 60] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--threads=")), "2"))
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from vocalis.contracts.checkpoint import network_hparams, save_checkpoint  # noqa: E402
from vocalis.contracts.runtime import onnx_session  # noqa: E402
from vocalis.data.long_recording import write_long_recording  # noqa: E402
from vocalis.export.check_windows import AudioWindows, cache_windows, synthetic_windows  # noqa: E402
from vocalis.export.onnx import WaveformClassifier, export_onnx, featurizer_output  # noqa: E402
from vocalis.export.prune import sparsity  # noqa: E402
from vocalis.export.quantize import quantize_model  # noqa: E402
from vocalis.features import FeatureParams, LogMel, StreamLogMel  # noqa: E402
from vocalis.models import build_model  # noqa: E402
from vocalis.models.checkpoint import load_network  # noqa: E402


def timed(fn: Callable[[], Any], min_time: float, min_reps: int = 3) -> float:
    """Best-of seconds per call after one warm-up call (best-of: least disturbed by the shared machine)."""
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while spent < min_time or reps < min_reps:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def sgemm_session(n: int, threads: int) -> Any:
    """An onnxruntime session of one fp32 ``[n, n] @ [n, n]`` MatMul (inputs ``a`` and ``b``)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "sgemm",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    path = Path(tempfile.mkdtemp()) / "sgemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return onnx_session(path, threads)


def matmul_peak(threads: int, n: int = 2048) -> dict[str, float]:
    """fp32 GEMM throughput (GFLOP/s) on ``threads`` threads with torch, numpy and onnxruntime (MLAS, the
    library the ONNX models run on): the best of the three is the machine's measured matmul peak."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_torch = timed(lambda: torch.mm(a, b), 2.0)
    an, bn = a.numpy(), b.numpy()
    t_np = timed(lambda: an @ bn, 2.0)
    sess = sgemm_session(n, threads)
    t_ort = timed(lambda: sess.run(None, {"a": an, "b": bn}), 2.0)
    flops = 2 * n**3
    return {"torch": flops / t_torch / 1e9, "numpy": flops / t_np / 1e9, "onnxruntime": flops / t_ort / 1e9}


def count_flops(module: torch.nn.Module, samples: int) -> float:
    """FLOPs of one window (batch of one)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(torch.zeros(1, samples))
    return float(counter.get_total_flops())


def onnx_runner(path: Path, threads: int) -> Callable[[np.ndarray], Any]:
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def accuracy(run: Callable[[np.ndarray], Any], windows: AudioWindows | None) -> float | None:
    if windows is None or not len(windows):
        return None
    probs = np.concatenate([run(windows.waveforms[i : i + 16])[0] for i in range(0, len(windows), 16)])
    return float(np.mean(probs.argmax(1) == windows.labels))


def interleaved_best(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best seconds per call of each function, timed round-robin: on cores shared with other jobs every
    variant sees the same weather, and the best of ``rounds`` is the least disturbed."""
    for fn in calls.values():
        fn()  # warm-up: arenas, first-call graph work
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def sgemm_call(threads: int, n: int = 1536) -> tuple[Callable[[], Any], float]:
    """An onnxruntime (MLAS) fp32 GEMM of n^3 and its FLOPs: timed among the variants for the peak."""

    sess = sgemm_session(n, threads)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return (lambda: sess.run(None, {"a": a, "b": a})), 2.0 * n**3


def bench_model(
    label: str,
    net: torch.nn.Module,
    features: FeatureParams,
    window_s: float,
    batch_size: int,
    tmp: Path,
    args: argparse.Namespace,
    test: AudioWindows | None,
    calibration: AudioWindows,
) -> list[dict[str, Any]]:
    """Every variant of one model, timed interleaved with the sgemm peak; returns table rows."""
    samples = round(window_s * features.sample_rate)
    module = WaveformClassifier(LogMel(features), net.eval()).eval()  # LogMel itself, as training runs it
    fmodule = WaveformClassifier(
        LogMel(features, stft="matmul"), net
    ).eval()  # the graph `vocalis export` writes
    flops = {"logmel": count_flops(module, samples), "factored": count_flops(fmodule, samples)}
    feat = {
        "logmel": count_flops(module.featurizer, samples),
        "factored": count_flops(fmodule.featurizer, samples),
    }
    print(
        f"\n## {label}: window {window_s} s = {samples} samples, batch {batch_size}; FLOPs/window: network "
        f"{(flops['logmel'] - feat['logmel']) / 1e9:.3f} G + featurizer {feat['logmel'] / 1e9:.3f} G "
        "(LogMel; FlopCounter does not count FFTs) "
        f"or {feat['factored'] / 1e9:.3f} G (factored DFT in the exported graph)",
        flush=True,
    )
    batch = synthetic_windows(batch_size, samples, features.sample_rate, seed=5).waveforms
    torch.set_num_threads(args.threads)
    runners: dict[str, tuple[Callable[[np.ndarray], Any], Path | None, str]] = {}

    @torch.inference_mode()
    def eager(x: np.ndarray) -> Any:
        return [t.numpy() for t in module(torch.from_numpy(x))]

    state_path = tmp / f"{label}.pt"
    torch.save(module.state_dict(), state_path)
    runners["pytorch eager"] = (eager, state_path, "size: state_dict")
    if args.compile:
        compiled = torch.compile(module)

        @torch.inference_mode()
        def comp(x: np.ndarray) -> Any:
            return [t.numpy() for t in compiled(torch.from_numpy(x))]

        runners["pytorch compile"] = (comp, None, "")

    conv32 = export_onnx(module, samples, tmp / f"{label}.logmel.fp32.onnx")
    runners["onnx fp32 LogMel-stft"] = (
        onnx_runner(conv32, args.threads),
        conv32,
        "LogMel verbatim (ONNX STFT)",
    )
    fp32 = export_onnx(fmodule, samples, tmp / f"{label}.fp32.onnx")
    runners["onnx fp32"] = (onnx_runner(fp32, args.threads), fp32, "")
    for kind, fe in (("factored", fmodule.featurizer), ("logmel", module.featurizer)):
        path = export_onnx(_FeaturizerOnly(fe).eval(), samples, tmp / f"{label}.feat-{kind}.onnx")
        runners[f"featurizer only {kind}"] = (onnx_runner(path, args.threads), path, "")
    tensor = featurizer_output(fp32)
    for fmt in ("qdq", "qoperator"):
        path = tmp / f"{label}.int8-{fmt}.onnx"
        quantize_model(fp32, path, featurizer_tensor=tensor, calibration=calibration, quant_format=fmt)
        runners[f"onnx int8 {fmt}"] = (onnx_runner(path, args.threads), path, "")
    if args.prune:
        pruned_net = _copy(net)
        targets = [
            (m, "weight") for m in pruned_net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        ]
        torch.nn.utils.prune.global_unstructured(
            targets, pruning_method=torch.nn.utils.prune.L1Unstructured, amount=0.5
        )
        for m, n in targets:
            torch.nn.utils.prune.remove(m, n)
        pmod = WaveformClassifier(LogMel(features, stft="matmul"), pruned_net.eval()).eval()
        ppath = export_onnx(pmod, samples, tmp / f"{label}.pruned50.onnx")
        runners["onnx fp32 pruned 50%"] = (
            onnx_runner(ppath, args.threads),
            ppath,
            f"sparsity {sparsity(pruned_net):.2f}",
        )

    gemm, gemm_flops = sgemm_call(args.threads)
    calls: dict[str, Callable[[], Any]] = {k: (lambda f=f: f(batch)) for k, (f, _, _) in runners.items()}
    calls["sgemm"] = gemm
    best = interleaved_best(calls, args.rounds)
    peak = gemm_flops / best.pop("sgemm") / 1e9
    print(f"  fp32 sgemm peak (onnxruntime MLAS, same rounds): {peak:.1f} GFLOP/s", flush=True)
    rows: list[dict[str, Any]] = []
    wps = {k: batch_size / t for k, t in best.items()}
    for variant, (run, path, note) in runners.items():
        if variant.startswith("featurizer"):
            continue
        kind = "logmel" if variant.startswith("pytorch") or "stft" in variant else "factored"
        gflop = wps[variant] * flops[kind] / 1e9
        row = {
            "model": label,
            "variant": variant,
            "windows_s": wps[variant],
            "flops_window": flops[kind],
            "gflops_s": gflop,
            "peak_gflops": peak,
            "peak_frac": gflop / peak,
            "size_mb": path.stat().st_size / 1e6 if path else None,
            "accuracy": accuracy(run, test),
            "note": note,
        }
        rows.append(row)
        acc = f"{row['accuracy']:.3f}" if row["accuracy"] is not None else "-"
        size = f"{row['size_mb']:.2f} MB" if row["size_mb"] is not None else "-"
        print(
            f"  {variant:<22} {wps[variant]:8.1f} windows/s {gflop:7.1f} GFLOP/s {gflop / peak:6.1%} of peak "
            f"size {size:>9} acc {acc} {note}",
            flush=True,
        )
    share = wps["onnx fp32"] / wps["featurizer only factored"]
    ratios = {
        "onnx fp32 factored / LogMel-stft": wps["onnx fp32"] / wps["onnx fp32 LogMel-stft"],
        "featurizer factored / logmel": wps["featurizer only factored"] / wps["featurizer only logmel"],
        "logmel featurizer share of its graph": wps["onnx fp32 LogMel-stft"] / wps["featurizer only logmel"],
        "onnx fp32 / eager": wps["onnx fp32"] / wps["pytorch eager"],
        "int8 qdq / fp32": wps["onnx int8 qdq"] / wps["onnx fp32"],
        "int8 qoperator / fp32": wps["onnx int8 qoperator"] / wps["onnx fp32"],
        "featurizer share of fp32 time": share,
    }
    if "pytorch compile" in wps:
        ratios["compile / eager"] = wps["pytorch compile"] / wps["pytorch eager"]
    print("  ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()), flush=True)
    rows.append({"model": label, "ratios": ratios, "featurizer_windows_s": wps["featurizer only factored"]})
    return rows


class _FeaturizerOnly(torch.nn.Module):
    def __init__(self, featurizer: torch.nn.Module) -> None:
        super().__init__()
        self.featurizer = featurizer

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.featurizer(waveform)
        return x, x


def _copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net)


def predict_long(
    artifact: Path,
    recording: Path,
    seconds: float,
    threads: int,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run ``vocalis predict`` in a subprocess under /usr/bin/time -v: wall seconds, RTF, peak RSS, CPU
    seconds (user + system: less moved by other jobs on the cores than the wall time); ``env`` replaces
    the environment (the before code's ``PYTHONPATH``). Each run writes a new output file: an existing
    one would make ``vocalis predict`` resume, skipping the recording."""
    output = Path(tempfile.mkdtemp(dir=tmp)) / f"{artifact.name}.csv"
    cmd = [
        "/usr/bin/time", "-v", sys.executable, "-c", "from vocalis.cli import main; main()", "predict",
        str(artifact), str(recording), "-o", str(output), "--threads", str(threads),
        "--min-conf", "0.5",
    ]  # fmt: skip
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", out.stderr))
    return {
        "wall_s": wall,
        "rtf": wall / seconds,
        "cpu_s": cpu,
        "peak_rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
    }


def _artifact_from_net(
    net: torch.nn.Module,
    name: str,
    classes: list[str],
    window_s: float,
    tmp: Path,
    model_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Export a (random-weight) network through the real exporter, via a checkpoint of the run contract."""
    from vocalis.export.onnx import export_artifact

    hp = network_hparams(
        model_name=name,
        classes=classes,
        features=FeatureParams(),
        window_s=window_s,
        hop_s=window_s if name != "compact" else window_s / 2,
        model_kwargs=model_kwargs,
    )
    run = tmp / f"run-{name}"
    save_checkpoint(run / "checkpoints" / "best.ckpt", net.state_dict(), hp)
    return export_artifact(run, tmp / f"artifact-{name}").directory


class BeforeLogMel(LogMel):
    """The exported featurizer as it was before frames were shared (kept here to measure against): one
    Cooley-Tukey step with blocks gathered, transposed, separate twiddle products, window by window."""

    def __init__(self, params: FeatureParams) -> None:
        super().__init__(params, stft="fft")
        p = params
        n1 = max(d for d in range(1, math.isqrt(p.n_fft) + 1) if p.n_fft % d == 0)
        n2 = p.n_fft // n1
        self.n1, self.n2 = n1, n2
        lo = self.lo
        k2_lo, k2_hi = lo // n1, (lo + self.n_bins - 1) // n1 + 1
        self.n_k2, self.offset, self.block = k2_hi - k2_lo, lo - k2_lo * n1, math.gcd(p.n_fft, p.hop_length)
        a = np.arange(n1)
        window = self.window.double().numpy()
        mel = self.mel_basis.double().numpy()
        ang1 = 2 * math.pi * np.outer(a, a) / n1
        twiddle = -2 * math.pi * np.outer(np.arange(n2), a) / p.n_fft
        ang2 = -2 * math.pi * np.outer(np.arange(n2), np.arange(k2_lo, k2_hi)) / n2
        consts = {
            "window_ba": window.reshape(n1, n2).T, "c1": np.cos(ang1), "s1": -np.sin(ang1),
            "tw_re": np.cos(twiddle), "tw_im": np.sin(twiddle), "c2": np.cos(ang2), "s2": np.sin(ang2),
            "mel_t": mel.T,
        }  # fmt: skip
        for key, value in consts.items():
            self.register_buffer(key, torch.tensor(value.copy(), dtype=torch.float32), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p, n1, n2, g = self.params, self.n1, self.n2, self.block
        batch = waveform.shape[0]
        pad = p.n_fft // 2
        x = torch.nn.functional.pad(waveform, (pad, pad))
        length = x.shape[-1]
        n_frames = 1 + (length - p.n_fft) // p.hop_length
        blocks = x[:, : (length // g) * g].reshape(batch, length // g, g)
        index = torch.arange(n_frames).unsqueeze(1) * (p.hop_length // g) + torch.arange(p.n_fft // g)
        frames = blocks[:, index].reshape(batch, n_frames, n1, n2).transpose(2, 3) * self.window_ba
        re, im = torch.matmul(frames, self.c1), torch.matmul(frames, self.s1)
        t_re = (re * self.tw_re - im * self.tw_im).transpose(2, 3)
        t_im = (re * self.tw_im + im * self.tw_re).transpose(2, 3)
        x_re = torch.matmul(t_re, self.c2) - torch.matmul(t_im, self.s2)
        x_im = torch.matmul(t_re, self.s2) + torch.matmul(t_im, self.c2)
        power = (x_re * x_re + x_im * x_im).transpose(2, 3).reshape(batch, n_frames, n1 * self.n_k2)
        mel = torch.matmul(power[:, :, self.offset : self.offset + self.n_bins], self.mel_t)
        return self.to_db(mel.transpose(1, 2)).unsqueeze(1)


class MatmulDftLogMel(LogMel):
    """The plain DFT as one matrix product (``n_fft x 2 bins`` a frame), window by window."""

    def __init__(self, params: FeatureParams) -> None:
        super().__init__(params, stft="fft")
        n, k = np.arange(params.n_fft), np.arange(self.lo, self.lo + self.n_bins)
        ang = 2 * math.pi * np.outer(n, k) / params.n_fft
        dft = np.concatenate([np.cos(ang), -np.sin(ang)], 1) * self.window.double().numpy()[:, None]
        mel2 = np.concatenate([self.mel_basis.double().numpy().T] * 2, 0)
        self.register_buffer("dft", torch.tensor(dft, dtype=torch.float32), persistent=False)
        self.register_buffer("mel2", torch.tensor(mel2, dtype=torch.float32), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p = self.params
        x = torch.nn.functional.pad(waveform, (p.n_fft // 2, p.n_fft // 2))
        frames = x.unfold(1, p.n_fft, p.hop_length)  # [B, frames, n_fft]
        y = torch.matmul(frames, self.dft)
        return self.to_db(torch.matmul(y * y, self.mel2).transpose(1, 2)).unsqueeze(1)


class RfftLogMel(LogMel):
    """``torch.fft.rfft`` of the windowed frames: the ONNX ``DFT`` operator in the graph."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p = self.params
        x = torch.nn.functional.pad(waveform, (p.n_fft // 2, p.n_fft // 2))
        frames = x.unfold(1, p.n_fft, p.hop_length) * self.window
        spec = torch.fft.rfft(frames, dim=-1)[..., self.lo : self.lo + self.n_bins]
        power = spec.real.square() + spec.imag.square()
        return self.to_db(torch.matmul(power, self.mel_basis.T).transpose(1, 2)).unsqueeze(1)


def _module_at(commit: str, relpath: str, tmp: Path) -> Any:
    """A module of ``src/vocalis`` as it was at ``commit`` (imported under another name, beside this
    checkout's), or ``None`` without that code."""
    import importlib.util

    src = source_at(commit, tmp)
    if src is None:
        return None
    spec = importlib.util.spec_from_file_location(f"_before_{commit}", src / relpath)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def featurizer_forms(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The featurizer alone, each exact DFT form as onnxruntime runs it, on the demo's windows (3 s, hop
    1.5 s, 16 windows = 25.5 s of audio): window by window, and the stream form on the same audio as one
    row. Timed round-robin, best of ``args.rounds``; max |Δ dB| against LogMel (torch.stft)."""
    params = FeatureParams()
    w, h, k = 96_000, 48_000, 16
    rng = np.random.default_rng(3)
    stream = (rng.standard_normal((1, w + (k - 1) * h)) * 0.1).astype(np.float32)
    windows = np.stack([stream[0, j * h : j * h + w] for j in range(k)])
    with torch.no_grad():
        reference = LogMel(params)(torch.from_numpy(windows)).numpy()
    forms: dict[str, tuple[torch.nn.Module, int | None, np.ndarray]] = {
        "factored DFT with transposes (earlier), per window": (BeforeLogMel(params), None, windows),
        "plain DFT matmul, per window": (MatmulDftLogMel(params), None, windows),
        "ONNX STFT op (torch.stft), per window": (LogMel(params), None, windows),
        "ONNX DFT op (torch.fft.rfft), per window": (RfftLogMel(params), None, windows),
        "factored DFT now, per window (LogMel matmul)": (LogMel(params, stft="matmul"), None, windows),
    }
    main_features = _module_at(args.before, "vocalis/features.py", tmp)
    if main_features is not None:
        forms[f"{args.before}: three GEMMs, stream (shared frames)"] = (
            main_features.StreamLogMel(params, w, h),
            h,
            stream,
        )
    forms["now: Conv stage one, stream (shared frames)"] = (StreamLogMel(params, w, h), h, stream)
    calls: dict[str, Callable[[], Any]] = {}
    errors: dict[str, float] = {}
    for i, (name, (module, hop, x)) in enumerate(forms.items()):
        path = tmp / f"featurizer-{i}.onnx"
        try:
            export_onnx(_FeaturizerOnly(module).eval(), w, path, stream_hop=hop)
        except Exception as exc:  # a form the exporter cannot write is reported, not fatal
            print(f"  {name}: not exported ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        run = onnx_runner(path, args.threads)
        errors[name] = float(np.abs(run(x)[0] - reference).max())
        calls[name] = lambda run=run, x=x: run(x)
    best = interleaved_best(calls, args.rounds)
    print(f"\n## The featurizer alone: {k} demo windows (3 s, hop 1.5 s), {args.threads} threads")
    base = best[next(iter(best))]
    for name, t in best.items():
        print(
            f"  {name:<52} {t * 1e3:7.1f} ms  -> 1 h: {t / (k * h / 32_000) * 3600:5.2f} s  "
            f"{base / t:4.2f}x  max |Δ dB| vs LogMel {errors[name]:.1e}",
            flush=True,
        )
    return {"seconds": best, "max_abs_db": errors}


def source_at(commit: str, tmp: Path) -> Path | None:
    """The ``src`` folder of ``commit`` of this repository (``git archive``), or ``None`` without git or
    that commit (a checkout without history): the "before" code of the hour."""
    root = Path(__file__).resolve().parents[1]
    if (tmp / f"src-{commit}" / "src").is_dir():
        return tmp / f"src-{commit}" / "src"
    try:
        tar = subprocess.run(
            ["git", "-C", str(root), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        out = tmp / f"src-{commit}"
        out.mkdir()
        subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  no 'before' code: git archive {commit} failed ({exc})")
        return None
    return out / "src"


def _env(src: Path | None) -> dict[str, str] | None:
    """The environment that runs vocalis from ``src`` (PYTHONPATH comes before the editable install)."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": str(src)}


def hour_before_after(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``vocalis predict`` on a generated hour of 32 kHz audio through the demo artifact (compact CNN at
    width 8, 3 s windows, hop 1.5 s, random weights): "before" is commit ``args.before`` (its exporter on
    the same checkpoint, its ``vocalis predict``), "after" this checkout; ``args.repeats`` times
    interleaved, the load average printed around each run."""
    net = build_model("compact", 10, 64, 301, width=8).eval()
    after = _artifact_from_net(net, "compact", [f"c{i}" for i in range(10)], 3.0, tmp, {"width": 8})
    arts: dict[str, tuple[Path, dict[str, str] | None]] = {"after": (after, None)}
    src = source_at(args.before, tmp)
    if src is not None:
        before = tmp / "artifact-compact-before"
        code = "import sys; from vocalis.export.onnx import export_artifact as e; e(sys.argv[1], sys.argv[2])"
        subprocess.run(
            [sys.executable, "-c", code, str(tmp / "run-compact"), str(before)], env=_env(src), check=True
        )
        arts = {"before": (before, _env(src)), **arts}
    seconds = args.minutes * 60
    rec = write_long_recording(tmp / "long.wav", seconds, sample_rate=32_000)
    per_hour = 3600 / seconds
    print(
        f"\n## vocalis predict, demo artifact, {args.minutes:g} min of 32 kHz audio, {args.threads} threads; "
        f"before = {args.before}, after = this checkout; seconds per hour of audio"
    )
    out: dict[str, list[dict[str, float]]] = {label: [] for label in arts}
    for rep in range(args.repeats):
        for label, (art, env) in arts.items():
            load = os.getloadavg()[0]
            r = predict_long(art, rec, seconds, args.threads, tmp, env)
            r["load_before"], r["load_after"] = load, os.getloadavg()[0]
            r["wall_s_per_hour"], r["cpu_s_per_hour"] = r["wall_s"] * per_hour, r["cpu_s"] * per_hour
            out[label].append(r)
            print(
                f"  run {rep + 1} {label:<6} {r['wall_s_per_hour']:6.2f} s/h wall, "
                f"{r['cpu_s_per_hour']:6.2f} s/h CPU, peak RSS {r['peak_rss_mb']:.0f} MB, "
                f"load {load:.1f} -> {r['load_after']:.1f}",
                flush=True,
            )
    for label, runs in out.items():
        walls = sorted(r["wall_s_per_hour"] for r in runs)
        cpus = sorted(r["cpu_s_per_hour"] for r in runs)
        print(
            f"  {label:<6} wall best {walls[0]:.2f} s/h, worst {walls[-1]:.2f} s/h; "
            f"CPU best {cpus[0]:.2f} s/h over {len(walls)} runs (target: <= 3 s/h wall, idle machine)"
        )
    if "before" in out:
        b, a = (min(r["wall_s"] for r in out[k]) for k in ("before", "after"))
        bc, ac = (min(r["cpu_s"] for r in out[k]) for k in ("before", "after"))
        print(f"  after / before: wall {a / b:.2f} ({b / a:.2f}x faster), CPU {ac / bc:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--run", type=Path, default=None, help="a trained demo run (compact) for accuracies")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the generated recording")
    parser.add_argument("--rounds", type=int, default=12, help="round-robin timing rounds (best-of)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="skip the pruned variant")
    parser.add_argument(
        "--no-predict", dest="predict", action="store_false", help="skip vocalis predict runs"
    )
    parser.add_argument("--models", default="compact,resnet34")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the before/after hour")
    parser.add_argument(
        "--no-models", dest="models_table", action="store_false", help="skip the per-model table"
    )
    parser.add_argument("--no-forms", dest="forms", action="store_false", help="skip the featurizer forms")
    parser.add_argument("--no-hour", dest="hour", action="store_false", help="skip the before/after hour")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--before", default="232c589", help="the commit the hour's 'before' runs")
    parser.add_argument(
        "--quick", action="store_true", help="only the before/after hour (as --no-models --no-forms)"
    )
    args = parser.parse_args()
    if args.quick:
        args.models_table = args.forms = args.predict = False
    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    print(
        f"# Inference benchmark: {args.threads} threads, {os.cpu_count()} CPUs visible, "
        f"torch {torch.__version__}"
    )
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other jobs share these cores)")
    peak_d = matmul_peak(args.threads) if not args.quick else {}
    print("fp32 sgemm 2048^3 (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peak_d.items()))
    params = FeatureParams()
    results: dict[str, Any] = {"threads": args.threads, "peak_gflops": peak_d, "rows": [], "predict": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.forms:
            results["featurizer_forms"] = featurizer_forms(args, tmp)
        if args.hour:
            results["hour"] = hour_before_after(args, tmp)
        models = args.models.split(",") if args.models_table else []
        nets: dict[str, tuple[torch.nn.Module, float, int, list[str]]] = {}
        test = None
        calibration_demo = synthetic_windows(32, round(3.0 * params.sample_rate), params.sample_rate, seed=9)
        if "compact" in models:
            if args.run:
                loaded = load_network(args.run / "checkpoints" / "best.ckpt")
                params, classes = loaded.features, loaded.classes
                w = round(loaded.window_s * params.sample_rate)
                test = cache_windows(
                    loaded.cache_dir, splits=("test",), classes=classes, sample_rate=params.sample_rate,
                    window_samples=w, limit=600,
                )  # fmt: skip
                cal = cache_windows(
                    loaded.cache_dir, splits=("train",), classes=classes, sample_rate=params.sample_rate,
                    window_samples=w, limit=128, seed=1,
                )  # fmt: skip
                calibration_demo = cal if len(cal) else calibration_demo
                nets["compact"] = (loaded.net, loaded.window_s, 16, classes)
            else:
                nets["compact"] = (build_model("compact", 10, 64, 301), 3.0, 16, [f"c{i}" for i in range(10)])
        if "resnet34" in models:
            nets["resnet34"] = (build_model("resnet34", 32, 64, 1168), 11.67, 2, [f"s{i}" for i in range(32)])
        for name, (net, window_s, bs, _classes) in nets.items():
            cal = (
                calibration_demo
                if name == "compact"
                else synthetic_windows(16, round(window_s * params.sample_rate), params.sample_rate, seed=9)
            )
            results["rows"] += bench_model(
                name, net, params, window_s, bs, tmp, args, test if name == "compact" else None, cal
            )
        if args.predict:
            seconds = args.minutes * 60
            rec = write_long_recording(tmp / "long.wav", seconds, sample_rate=32_000)
            print(
                f"\n## vocalis predict on a generated {args.minutes:g}-minute 32 kHz recording "
                f"({args.threads} threads)"
            )
            for name, (net, window_s, _bs, classes) in nets.items():
                # through the real exporter: the same graph, card and checks as `vocalis export`
                if name == "compact" and args.run:
                    from vocalis.export.onnx import export_artifact

                    art = export_artifact(args.run, tmp / "artifact-run").directory
                else:
                    art = _artifact_from_net(net, name, classes, window_s, tmp)
                card = json.loads((art / "model.json").read_text())
                r = predict_long(art, rec, seconds, args.threads, tmp)
                r.update(window_s=card["window_s"], hop_s=card["hop_s"])
                results["predict"][name] = r
                print(
                    f"  {name:<9} window {card['window_s']} s hop {card['hop_s']} s: "
                    f"{r['wall_s']:.1f} s wall, real-time factor {r['rtf']:.4f} "
                    f"({1 / r['rtf']:.0f}x real time), "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB"
                )
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
