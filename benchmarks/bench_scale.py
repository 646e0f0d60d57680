"""Prediction throughput by engine, side by side in one run: files/s and audio-hours/s.

- **before**: one file at a time, ``Predictor.predict_stream`` per file (what ``vocalis predict`` did before
  the pipelined engine);
- **batched**: the local engine without decoding processes (``workers=0``: windows of consecutive files
  share onnxruntime batches, decoding still in line);
- **pipelined**: the local engine with ``--workers`` decoding processes (default: ``vocalis predict``'s
  default, at least one; on one or two CPUs ``vocalis predict`` itself decodes in line, as "batched");
- **ray**: the Ray engine on a local Ray instance with one CPU per core (start-up reported apart; left out
  with ``--no-ray`` or when Ray is not installed).

on two inputs: short clips (a folder of real recordings, replicated by symbolic links to ``--clips`` files;
generated 1-10 s clips at 44.1 kHz when ``--source`` is absent) and long recordings (``--long`` generated
WAV files of ``--long-minutes`` at 44.1 kHz, resampled to the model's rate and split into segments). The
model is ``--artifact``, or the demo network (compact, 3 s windows at 32 kHz, 10 classes) with random
weights exported through the real exporter (needs torch): speed does not depend on the weights. The
predictions of every engine are compared with "before" (the last column: the largest |Δprob|; within 1e-5
at the model's rate).

Each row also gives the CPU seconds (user + system) of this process and every process it started (decoding
processes, Ray's raylet and workers), sampled every 0.2 s: a figure that moves less with other jobs' load
than wall time. The summary lines give the ratios the targets are stated in: pipelined / before files/s
(target >= 1.5x on short clips) and Ray / the faster local engine (target: within 20 %, >= 0.8).

    uv run python benchmarks/bench_scale.py [--quick] [--source /work/shared/data/animal-sounds]
        [--clips 875] [--long 2 --long-minutes 10] [--workers 1] [--threads 2] [--no-ray] [--artifact DIR]

``--quick`` (300 clips, one 6-minute recording) runs in about five minutes on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import threading
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


def synthetic_clips(n: int, dest: Path, seed: int = 0) -> list[Path]:
    """``n`` generated clips like the animal-sounds set's (1-10 s, 44.1 kHz, 16-bit WAV): tone bursts over
    noise (speed does not depend on what they hold)."""
    dest.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sr = 44_100
    out = []
    for i in range(n):
        t = np.arange(int(rng.uniform(1.0, 10.0) * sr)) / sr
        x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * rng.uniform(300, 6000) * t)
        path = dest / f"clip{i:03d}.wav"
        sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
        out.append(path)
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


class CpuMeter:
    """CPU seconds (user + system) of this process and all its descendants while running, sampled every
    0.2 s: a process that ends between two samples loses at most its last 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._seen: dict[tuple[int, float], float] = {}
        self._start: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> dict[tuple[int, float], float]:
        import psutil

        out = {}
        for p in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                c = p.cpu_times()
                out[(p.pid, p.create_time())] = c.user + c.system
        return out

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._seen.update(self._sample())

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._seen = dict(self._start)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._seen.update(self._sample())

    @property
    def seconds(self) -> float:
        """CPU seconds used between enter and exit."""
        return sum(v - self._start.get(k, 0.0) for k, v in self._seen.items())


def measure(fn: Callable[[], Iterator[tuple[str, Any]]], hours: float, n: int) -> dict[str, Any]:
    """Wall and CPU time of a whole run, files/s, audio-hours/s, and the outcomes (for the agreement
    check)."""
    with CpuMeter() as cpu:
        t = time.perf_counter()
        outcomes = dict(fn())
        wall = time.perf_counter() - t
    return {
        "wall_s": wall,
        "cpu_s": cpu.seconds,
        "files_s": n / wall,
        "audio_h_s": hours / wall,
        "outcomes": outcomes,
    }


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
    parser.add_argument("--clips", type=int, default=None, help="short files (links to --source, cycled)")
    parser.add_argument("--long", type=int, default=None, help="long recordings (default 2)")
    parser.add_argument("--long-minutes", type=float, default=None, help="(default 10)")
    parser.add_argument("--quick", action="store_true", help="300 clips and one 6-minute recording")
    parser.add_argument(
        "--workers", type=int, default=None, help="'pipelined' decoders (default: the CLI's, >= 1)"
    )
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all CPUs)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray engine out")
    parser.add_argument("--ray", action="store_true", help=argparse.SUPPRESS)  # the default now; kept
    parser.add_argument("--artifact", type=Path, default=None)
    args = parser.parse_args()
    quick = (300, 1, 6.0) if args.quick else (875, 2, 10.0)
    args.clips = quick[0] if args.clips is None else args.clips
    args.long = quick[1] if args.long is None else args.long
    args.long_minutes = quick[2] if args.long_minutes is None else args.long_minutes
    use_ray = not args.no_ray
    if use_ray:
        try:
            from vocalis.inference.ray_engine import require_ray

            require_ray()
        except Exception as exc:  # the extra is not installed: say so, run the local engines
            print(f"ray left out: {exc}")
            use_ray = False
    logging.basicConfig(level=logging.ERROR)
    from vocalis.inference.engine import default_workers

    workers = max(1, default_workers()) if args.workers is None else args.workers
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
        if args.source.is_dir():
            clips = replicate(args.source, args.clips, tmp / "clips")
        else:
            print(f"{args.source} is absent: generated clips (100, cycled) stand in for it")
            synthetic_clips(100, tmp / "generated")
            clips = replicate(tmp / "generated", args.clips, tmp / "clips")
        sets = {
            "short clips": clips,
            "long recordings": long_files(args.long, args.long_minutes, tmp / "long"),
        }
        if use_ray:
            import ray

            from vocalis.contracts.runtime import default_threads

            t = time.perf_counter()
            os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
            os.environ.setdefault("RAY_worker_niceness", "0")  # as the engine does (ray_engine.py)
            try:
                ray.init(
                    address="local", num_cpus=default_threads(), include_dashboard=False, log_to_driver=False
                )
                print(f"ray start-up: {time.perf_counter() - t:.1f} s (not counted below)")
            except (
                Exception
            ) as exc:  # a node that dies starting (a loaded machine): the local engines still run
                ray.shutdown()
                print(f"ray left out: no local Ray node after {time.perf_counter() - t:.0f} s ({exc})")
                use_ray = False
        print()
        print(
            "| input | files | audio h | engine | wall s | CPU s | files/s | audio h/s | x before | "
            "max dprob |"
        )
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        summary = []
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
            if use_ray:
                runs["ray"] = lambda files=files: run_ray(artifact, p, files, 1)
            res = {k: measure(fn, hours, len(files)) for k, fn in runs.items()}
            base = res["before"]
            for k, r in res.items():
                diff = agree(base["outcomes"], r["outcomes"])
                print(
                    f"| {name} | {len(files)} | {hours:.3f} | {k} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                    f"{r['files_s']:.2f} | {r['audio_h_s']:.4f} | {base['wall_s'] / r['wall_s']:.2f} | "
                    f"{diff:.1e} |"
                )
            pipe = res["pipelined"]
            line = (
                f"{name}: pipelined / before {base['wall_s'] / pipe['wall_s']:.2f}x files/s "
                f"({'target >= 1.5x; ' if name == 'short clips' else ''}"
                f"CPU s {base['cpu_s'] / pipe['cpu_s']:.2f}x)"
            )
            if "ray" in res:
                r = res["ray"]
                best = min(("batched", "pipelined"), key=lambda k: res[k]["wall_s"])
                local = res[best]
                line += (
                    f"; ray / {best} {local['wall_s'] / r['wall_s']:.2f} "
                    f"(target >= 0.8; CPU s {local['cpu_s'] / r['cpu_s']:.2f})"
                )
            summary.append(line)
        print()
        print("\n".join(summary))
        if use_ray:
            ray.shutdown()
    load1 = os.getloadavg()
    print(f"\nload average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
