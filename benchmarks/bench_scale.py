"""Prediction throughput by engine, side by side in one run: files/s and audio-hours/s.

- **before**: one file at a time, ``Predictor.predict_stream`` per file (what ``vocalis predict`` did before
  the pipelined engine);
- **batched**: the local engine without decoding processes (``workers=0``: windows of consecutive files
  share onnxruntime batches, decoding still in line);
- **pipelined**: the local engine with ``--workers`` decoding processes (the default of ``vocalis predict``);
- **ray**: the Ray engine on a local Ray instance (start-up reported apart), ``--ray`` to include it.

on two inputs: short clips (a folder of real recordings, replicated by symbolic links to ``--clips`` files)
and long recordings (``--long`` generated WAV files of ``--long-minutes`` at 44.1 kHz, resampled to the
model's rate and split into segments). The model is ``--artifact``, or the demo network (compact, 3 s
windows at 32 kHz, 10 classes) with random weights exported through the real exporter (needs torch): speed
does not depend on the weights. The CSV rows of every engine are checked to agree (labels and ranks equal,
probabilities within 1e-5 at the model's rate).

    uv run python benchmarks/bench_scale.py [--source /work/shared/data/animal-sounds] [--clips 875]
        [--long 2 --long-minutes 10] [--workers 1] [--threads 2] [--ray] [--artifact DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from vocalis.contracts.discovery import find_audio_files
from vocalis.inference import Predictor
from vocalis.inference.engine import LocalEngine
from vocalis.inference.jobs import header_duration, plan_jobs


def demo_artifact(tmp: Path) -> Path:
    """The demo network with random weights, exported like ``vocalis export`` does."""
    import torch

    from vocalis.contracts.checkpoint import network_hparams, save_checkpoint
    from vocalis.contracts.features import FeatureParams
    from vocalis.export.onnx import export_artifact
    from vocalis.models import build_model

    torch.manual_seed(0)
    params = FeatureParams()
    net = build_model("compact", 10, params.n_mels, 301).eval()
    hp = network_hparams(
        model_name="compact", classes=[f"c{i}" for i in range(10)], features=params, window_s=3.0, hop_s=1.5
    )
    run = tmp / "run-demo"
    save_checkpoint(run / "checkpoints" / "best.ckpt", net.state_dict(), hp)
    return export_artifact(run, tmp / "artifact-demo").directory


def replicate(source: Path, n: int, dest: Path) -> list[Path]:
    """``n`` links to the recordings under ``source`` (cycled), in one folder."""
    found = sorted(find_audio_files(source, recursive=True))
    dest.mkdir(parents=True)
    out = []
    for i in range(n):
        f = found[i % len(found)]
        link = dest / f"{i:05d}_{f.name}"
        link.symlink_to(f.resolve())
        out.append(link)
    return out


def long_files(n: int, minutes: float, dest: Path) -> list[Path]:
    """``n`` generated recordings (noise and tone bursts, 44.1 kHz, 16-bit WAV)."""
    dest.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sr = 44_100
    out = []
    for i in range(n):
        path = dest / f"long{i}.wav"
        with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as fh:
            for _ in range(int(minutes)):
                t = np.arange(60 * sr) / sr
                x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(
                    2 * np.pi * rng.uniform(300, 6000) * t
                ) * (np.sin(2 * np.pi * 0.2 * t) > 0.7)
                fh.write(x.astype(np.float32))
        out.append(path)
    return out


def before(p: Predictor, files: list[Path]) -> Iterator[tuple[str, Any]]:
    """One file at a time, as ``vocalis predict`` did before the pipelined engine."""
    for f in files:
        try:
            yield str(f), p.predict_stream(f)
        except Exception as exc:  # a bad file is skipped, as the CLI does
            yield str(f), str(exc)


def run_local(p: Predictor, files: list[Path], workers: int) -> Iterator[tuple[str, Any]]:
    """The local engine with ``workers`` decoding processes."""
    spec = p.window_spec()
    names = [str(f) for f in files]
    durations = []
    for f in names:
        try:
            durations.append(header_duration(f))
        except Exception:
            durations.append(0.0)
    return LocalEngine(p, workers=workers).run(plan_jobs(names, durations, spec), spec)


def run_ray(artifact: Path, p: Predictor, files: list[Path], threads: int) -> Iterator[tuple[str, Any]]:
    """The Ray engine on the running (local) Ray instance."""
    from vocalis.inference.ray_engine import run_ray as ray_run

    spec = p.window_spec()
    names = [str(f) for f in files]
    durations = [header_duration(f) for f in names]
    return ray_run(artifact, plan_jobs(names, durations, spec), spec, p.classes, threads=1)


def measure(fn: Callable[[], Iterator[tuple[str, Any]]], hours: float, n: int) -> dict[str, Any]:
    """Wall time of a whole run, files/s, audio-hours/s, and the outcomes (for the agreement check)."""
    t = time.perf_counter()
    outcomes = dict(fn())
    wall = time.perf_counter() - t
    return {"wall_s": wall, "files_s": n / wall, "audio_h_s": hours / wall, "outcomes": outcomes}


def agree(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest |Δprob| between two runs' predictions (inf when files or windows differ)."""
    worst = 0.0
    if set(a) != set(b):
        return float("inf")
    for k, fa in a.items():
        fb = b[k]
        if isinstance(fa, str) or isinstance(fb, str):
            if isinstance(fa, str) != isinstance(fb, str):
                return float("inf")
            continue
        pa, pb = fa.probabilities(), fb.probabilities()
        if pa.shape != pb.shape:
            return float("inf")
        worst = max(worst, float(np.abs(pa - pb).max()) if pa.size else 0.0)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/animal-sounds"))
    parser.add_argument("--clips", type=int, default=875, help="short files (links to --source, cycled)")
    parser.add_argument("--long", type=int, default=2, help="long recordings")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: the CLI's)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all CPUs)")
    parser.add_argument("--ray", action="store_true", help="include the Ray engine (needs vocalis[ray])")
    parser.add_argument("--artifact", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from vocalis.inference.engine import default_workers

    workers = default_workers() if args.workers is None else args.workers
    load0 = os.getloadavg()
    print(f"# Prediction throughput: {os.cpu_count()} CPUs visible, {workers} decoding process(es)")
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (other jobs share these cores)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        artifact = args.artifact or demo_artifact(tmp)
        p = Predictor.from_dir(artifact, threads=args.threads)
        print(
            f"model: {p.card.name} {p.card.architecture}, {p.card.window_s:g} s windows at {p.sample_rate} Hz"
        )
        sets = {
            "short clips": replicate(args.source, args.clips, tmp / "clips"),
            "long recordings": long_files(args.long, args.long_minutes, tmp / "long"),
        }
        ray_ctx = None
        if args.ray:
            import ray

            t = time.perf_counter()
            os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            ray_ctx = time.perf_counter() - t
            print(f"ray start-up: {ray_ctx:.1f} s (not counted below)")
        print()
        print("| input | files | audio h | engine | wall s | files/s | audio h/s | x before | max dprob |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        for name, files in sets.items():
            hours = 0.0
            for f in files:
                with contextlib.suppress(Exception):  # an unreadable file counts no audio
                    hours += header_duration(str(f)) / 3600
            runs: dict[str, Callable[[], Iterator[tuple[str, Any]]]] = {
                "before": lambda files=files: before(p, files),
                "batched": lambda files=files: run_local(p, files, 0),
                "pipelined": lambda files=files: run_local(p, files, workers),
            }
            if args.ray:
                runs["ray"] = lambda files=files: run_ray(artifact, p, files, 1)
            res = {k: measure(fn, hours, len(files)) for k, fn in runs.items()}
            base = res["before"]
            for k, r in res.items():
                diff = agree(base["outcomes"], r["outcomes"])
                print(
                    f"| {name} | {len(files)} | {hours:.3f} | {k} | {r['wall_s']:.1f} | {r['files_s']:.2f} | "
                    f"{r['audio_h_s']:.4f} | {base['wall_s'] / r['wall_s']:.2f} | {diff:.1e} |"
                )
        if args.ray:
            import ray

            ray.shutdown()
    load1 = os.getloadavg()
    print(f"\nload average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
