"""Serving benchmark: the vocalis service vs the in-process Predictor vs the reference's serving approach.

    uv run python benchmarks/bench_serving.py [--duration 20] [--users 1,8,32] [--arch compact]

One run measures, on the same recording (an 11.67 s call at 32 kHz: the reference's 1168-frame clip, one
window of the reference WMMS configuration) and the same network weights:

(a) the in-process :class:`vocalis.inference.Predictor` (bytes in, decode + windows + ONNX, one loop);
(b) ``vocalis serve`` under Locust (``tests/performance/locustfile.py`` ``VocalisUser``) at each user count;
(c) the reference's approach re-created: the client computes the 64 x 1168 log-mel with librosa and POSTs
    it as JSON to an endpoint that runs the same network (exported alone to ONNX, spectrogram in) and
    returns the class index (``ReferenceUser``), at each user count.

It prints RPS, p50/p95/p99 and errors per run and the ratios the serving targets are stated in, and writes
them to ``--out`` (JSON + Markdown). Machine figures depend on the CPU: quote them with the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "tests" / "performance" / "locustfile.py"
N_CLASSES = 32  # the Watkins reference task
SEED_FRAMES = 1168
CLIP_S = 11.67  # 1 + 11.67 s * 32000 / 320 = 1168 frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_models(work: Path, arch: str) -> tuple[Path, Path]:
    """Export one network twice: the vocalis artifact (waveform in), the reference-style ONNX (log-mel in)."""
    import torch

    from vocalis.contracts.checkpoint import network_hparams, save_checkpoint
    from vocalis.contracts.features import FeatureParams
    from vocalis.export.onnx import export_artifact
    from vocalis.models import build_model

    params = FeatureParams()  # the reference's featurizer: 32 kHz, n_fft 1024, hop 320, 64 mels, 50-14000 Hz
    # the reference WMMS configuration (configs/data/wmms.yaml): one 11.67 s window per clip, which is the
    # reference system's 1168-frame input, so both approaches run the same network on the same amount of audio
    window_s = hop_s = CLIP_S
    n_frames = params.n_frames(round(window_s * params.sample_rate))
    torch.manual_seed(0)
    classes = [f"species_{i:02d}" for i in range(N_CLASSES)]
    net = build_model(arch, N_CLASSES, params.n_mels, n_frames).eval()
    run = work / "run"
    hparams = network_hparams(
        model_name=arch, classes=classes, features=params, window_s=window_s, hop_s=hop_s
    )
    save_checkpoint(run / "checkpoints" / "best.ckpt", net.state_dict(), hparams)
    artifact = work / "artifact"
    export_artifact(run, artifact, name=f"bench-{arch}")
    reference_onnx = work / "reference_network.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, params.n_mels, SEED_FRAMES),),
        str(reference_onnx),
        input_names=["spectrogram"],
        output_names=["logits"],
        dynamo=False,
        opset_version=17,
    )
    return artifact, reference_onnx


def write_audio(path: Path, seconds: float = CLIP_S, sr: int = 32_000) -> bytes:
    """The benchmark recording, 16-bit WAV: a chirped tone over noise lasting the reference's 1168 frames.

    (Not imported from the locustfile: importing locust monkey-patches the process with gevent.)
    """
    import soundfile as sf

    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (800 * t + 150 * t**2)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    sf.write(path, (x + 0.02 * rng.standard_normal(t.size)).astype(np.float32), sr, subtype="PCM_16")
    return path.read_bytes()


def in_process(artifact: Path, data: bytes, n: int, *, threads: int | None, workers: int) -> dict[str, Any]:
    """Predictor.predict(bytes) in ``workers`` parallel loops (one session each), after a warm-up.

    ``workers=1, threads=None`` is how ``vocalis predict`` runs; ``workers=cores, threads=1`` is the most
    a process can get out of the CPU with this model (no HTTP, no logging): the honest ceiling.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vocalis.inference import Predictor

    predictors = [Predictor.from_dir(artifact, threads=threads) for _ in range(workers)]
    for p in predictors:
        p.predict(data)
    per_worker = max(1, n // workers)

    def loop(p: Any) -> list[float]:
        out = []
        for _ in range(per_worker):
            t = time.perf_counter()
            p.predict(data)
            out.append(time.perf_counter() - t)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        times = [x for chunk in pool.map(loop, predictors) for x in chunk]
    total = time.perf_counter() - t0
    ms = np.array(times) * 1e3
    return {
        "rps": len(times) / total,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "requests": len(times),
        "failures": 0,
        "threads": threads or "default",
        "workers": workers,
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def run_locust(
    user_class: str, host: str, users: int, duration: int, prefix: Path, audio: Path
) -> dict[str, Any]:
    """One headless Locust run; returns the aggregated row of its CSV report."""
    env = {**os.environ, "VOCALIS_LOAD_AUDIO": str(audio)}
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        user_class,
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "-H",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "10",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(
        cmd,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=duration + 600,  # a loaded machine starts Locust (and librosa) slowly
    )
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")

    def num(key: str) -> float:
        return float(row[key]) if row[key] not in ("", "N/A") else float("nan")

    return {
        "rps": num("Requests/s"),
        "p50": num("50%"),
        "p95": num("95%"),
        "p99": num("99%"),
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
    }


def serve_reference(onnx_path: str, port: int) -> None:
    """The reference-style endpoint: POST /predict {"spectrogram": [[...64 x 1168...]]} -> {"index": k}."""
    import onnxruntime as ort
    import uvicorn
    from fastapi import Body, FastAPI

    # the reference's own set-up (onnxruntime's defaults), not vocalis' session builder: this is the
    # baseline being compared against
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.post("/predict")
    def predict(payload: dict[str, Any] = Body(...)) -> dict[str, int]:
        x = np.asarray(payload["spectrogram"], dtype=np.float32)[None, None]
        logits = session.run(None, {"spectrogram": x})[0]
        return {"index": int(np.argmax(logits[0]))}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds per Locust run")
    parser.add_argument("--users", default="1,8,32", help="comma-separated user counts")
    parser.add_argument("--arch", default="compact", help="network: compact, resnet18, resnet34")
    parser.add_argument("--n-inproc", type=int, default=60, help="in-process calls timed")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest-results" / "bench_serving")
    parser.add_argument("--serve-reference", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_reference:
        serve_reference(args.serve_reference, args.port)
        return

    users = [int(u) for u in args.users.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vocalis-bench-serving-"))
    print(f"building models ({args.arch}) in {work} ...", flush=True)
    artifact, reference_onnx = build_models(work, args.arch)
    audio = work / "call.wav"
    data = write_audio(audio)

    print("in-process Predictor ...", flush=True)
    from vocalis.inference import default_threads

    cores = default_threads()
    results: dict[str, Any] = {
        "in_process": in_process(artifact, data, args.n_inproc, threads=None, workers=1),
        "in_process_parallel": in_process(artifact, data, args.n_inproc, threads=1, workers=cores),
        "service": {},
        "reference": {},
    }

    port = free_port()
    env = {
        **os.environ,
        "VOCALIS_DATABASE_URL": f"sqlite:///{work / 'log.db'}",
        "VOCALIS_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from vocalis.cli import main; sys.argv[0]='vocalis'; main()",
            "serve",
            "--model",
            str(artifact),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", server)
        for u in users:
            print(f"service, {u} users ...", flush=True)
            results["service"][u] = run_locust(
                "VocalisUser", f"http://127.0.0.1:{port}", u, args.duration, args.out / f"service_{u}", audio
            )
    finally:
        server.terminate()
        server.wait(15)

    port = free_port()
    reference = subprocess.Popen(
        [sys.executable, __file__, "--serve-reference", str(reference_onnx), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", reference)
        for u in users:
            print(f"reference approach, {u} users ...", flush=True)
            results["reference"][u] = run_locust(
                "ReferenceUser", f"http://127.0.0.1:{port}", u, args.duration, args.out / f"seed_{u}", audio
            )
    finally:
        reference.terminate()
        reference.wait(15)

    ip, ipp = results["in_process"], results["in_process_parallel"]
    best = max(ip, ipp, key=lambda r: r["rps"])
    lines = [
        f"Machine: {os.cpu_count()} CPU cores visible ({platform.processor() or platform.machine()}), "
        f"no GPU; network `{args.arch}`, {N_CLASSES} classes; recording {len(data) / 1e3:.0f} kB WAV, "
        f"{CLIP_S} s at 32 kHz (one {CLIP_S} s window); {args.duration} s per Locust run.",
        "",
        "| system | users | RPS | p50 ms | p95 ms | p99 ms | requests | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in (
        ("in-process Predictor, 1 loop, default threads", ip),
        (f"in-process Predictor, {cores} loops x 1 thread", ipp),
    ):
        lines.append(
            f"| {label} | {r['workers']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} "
            f"| {r['p99']:.0f} | {r['requests']} | 0 |"
        )
    for name, key in (("vocalis serve", "service"), ("reference approach (librosa + JSON)", "reference")):
        for u in users:
            r = results[key][u]
            lines.append(
                f"| {name} | {u} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} "
                f"| {r['requests']} | {r['failures']} |"
            )
    lines.append("")
    svc, sd = results["service"], results["reference"]
    ratios = {}
    if 8 in svc:
        ratios["service_8u_rps_over_best_in_process"] = svc[8]["rps"] / best["rps"]
        ratios["service_8u_rps_over_in_process_1_loop"] = svc[8]["rps"] / ip["rps"]
    if 8 in svc and 8 in sd:
        ratios["service_over_reference_8u_rps"] = svc[8]["rps"] / sd[8]["rps"]
    if 1 in svc:
        ratios["service_1u_p99_over_in_process_p99"] = svc[1]["p99"] / ip["p99"]
        ratios["service_1u_p99_over_in_process_p50"] = svc[1]["p99"] / ip["p50"]
    ratios["total_errors"] = sum(r["failures"] for r in [*svc.values(), *sd.values()])
    for k, v in ratios.items():
        lines.append(f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}")
    results["ratios"] = ratios
    text = "\n".join(lines)
    print(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
