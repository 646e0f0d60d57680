"""Transfer-learning speed: backbone embeddings per second, and what an hour of audio costs per artifact.

- BirdNET v2.4 (the ``transfer`` extra) by LiteRT: windows (3 s at 48 kHz) per second at batch 1 and 4, on
  1 and ``--threads`` threads. ONNX Runtime is measured too when ``--onnx-backbone`` names a BirdNET ONNX
  file with an ``embedding`` output (the converter available today, tf2onnx 1.16, does not convert BirdNET:
  see docs/transfer.md), else reported as not available.
- For each ``--artifact NAME=DIR`` (the transfer artifact, a compact/demo artifact, a ResNet34 artifact):
  seconds per window through :class:`vocalis.inference.Predictor` (noise windows, ``--windows`` of them)
  and the extrapolated seconds for one hour of audio (3600 / window_s windows, hop = window).

    uv run python benchmarks/bench_transfer.py --artifact transfer=ART --artifact demo=ART2 [--threads 2]

Prints one JSON object; the figures depend on the machine and its load (say both when quoting them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _rate(fn, x: np.ndarray, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn(x[:1])  # warm-up (allocation)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return repeats * len(x) / (time.perf_counter() - t)


def bench_backbones(windows: int, threads: int, onnx_backbone: Path | None) -> dict[str, object]:
    from vocalis.transfer.backbones import BirdNetLite

    x = np.random.default_rng(0).normal(0, 0.1, (windows, 144_000)).astype(np.float32)
    out: dict[str, object] = {}
    for n_threads in sorted({1, threads}):
        for batch in (1, 4):
            bb = BirdNetLite(threads=n_threads, batch_size=batch)
            out[f"litert_threads{n_threads}_batch{batch}_windows_per_s"] = round(_rate(bb.embed, x, 1), 2)
    if onnx_backbone is not None:
        from vocalis.contracts.runtime import onnx_session

        session = onnx_session(onnx_backbone, threads)
        name = session.get_inputs()[0].name
        out["onnxruntime_windows_per_s"] = round(
            _rate(lambda w: session.run(["embedding"], {name: w}), x, 1), 2
        )
    else:
        out["onnxruntime_windows_per_s"] = "not available (BirdNET does not convert with tf2onnx 1.16)"
    return out


def bench_artifacts(artifacts: list[str], windows: int, threads: int) -> dict[str, object]:
    from vocalis.inference import Predictor

    out: dict[str, object] = {}
    for spec in artifacts:
        name, _, path = spec.partition("=")
        t0 = time.perf_counter()
        p = Predictor.from_dir(path, threads=threads)
        load_s = time.perf_counter() - t0
        w = p.card.window_samples
        x = np.random.default_rng(1).normal(0, 0.1, (windows, w)).astype(np.float32)
        bs = p.batch_size

        def run(batch: np.ndarray, p: Predictor = p, bs: int = bs) -> None:
            for i in range(0, len(batch), bs):
                p.session.run(["probabilities"], {"waveform": batch[i : i + bs]})

        rate = _rate(run, x, 1)
        per_hour = 3600.0 / p.card.window_s / rate
        out[name] = {
            "architecture": p.card.architecture,
            "window_s": p.card.window_s,
            "sample_rate": p.card.sample_rate,
            "load_s": round(load_s, 2),
            "windows_per_s": round(rate, 2),
            "seconds_per_audio_hour": round(per_hour, 1),
            "real_time_factor": round(per_hour / 3600.0, 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", action="append", default=[], help="NAME=ARTIFACT_DIR (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=16, help="windows per measurement")
    ap.add_argument("--onnx-backbone", type=Path, default=None)
    args = ap.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "threads": args.threads,
        "backbone": bench_backbones(args.windows, args.threads, args.onnx_backbone),
        "artifacts": bench_artifacts(args.artifact, args.windows, args.threads),
    }
    result["machine"]["load_avg_1m_after"] = os.getloadavg()[0]  # type: ignore[index]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
