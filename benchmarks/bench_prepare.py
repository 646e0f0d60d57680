"""Data preparation throughput: ``vocalis data prepare`` vs the reference's one-clip-at-a-time librosa loop.

Both run on the same generated set (synthetic calls, 1-5 s, 16-48 kHz, WAV and FLAC), side by side in one
run, each in its own subprocess so that its peak resident memory is its own:

- baseline (the reference's loop, re-created): for each file, ``librosa.load(path, sr=32000)``
  (soxr_hq resampling),
  ``librosa.feature.melspectrogram`` (n_fft 1024, hop 320, 64 mels, 50-14000 Hz) and
  ``librosa.power_to_db(ref=np.max, top_db=80)``, one clip at a time, one process. It featurizes each
  clip once as a whole, which is about the same FFT work as our overlapping 3 s windows with shared
  frames. Run twice: as is (numpy's BLAS may use every core for the mel projection, and spins when the
  cores are busy) and with one BLAS thread (steadier on a shared machine).
- vocalis: :func:`vocalis.data.prepare.prepare_from_config` into an empty cache directory: fingerprints,
  splits, header pass, parallel decode + resample + window + log-mel, float16 memmap, manifest.

Timings exclude interpreter start-up and library imports on both sides (librosa's numba JIT is warmed on
a tiny signal first); worker-process start-up is included for vocalis.

    uv run python benchmarks/bench_prepare.py [--per-class 40] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _usage() -> dict[str, float]:
    """Peak RSS of this process and of its largest finished child, and CPU seconds of both."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "peak_rss_mib": own.ru_maxrss / 1024,
        "peak_child_rss_mib": kids.ru_maxrss / 1024,
        "cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
    }


def run_baseline(root: Path) -> dict[str, float]:
    """The reference system's loop, timed."""
    import librosa
    import numpy as np

    from vocalis.contracts.discovery import find_audio_files

    files = find_audio_files(root)
    warm = librosa.feature.melspectrogram(y=np.zeros(32_000, np.float32), sr=32_000)  # numba JIT
    librosa.power_to_db(warm, ref=np.max, top_db=80)
    before = _usage()["cpu_s"]
    t0 = time.perf_counter()
    frames = 0
    for f in files:
        y, sr = librosa.load(f, sr=32_000)
        s = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14_000.0
        )
        db = librosa.power_to_db(s, ref=np.max, top_db=80)
        frames += db.shape[1]
    seconds = time.perf_counter() - t0
    use = _usage()
    return {"clips": len(files), "seconds": seconds, "frames": frames, **use, "cpu_s": use["cpu_s"] - before}


def run_vocalis(root: Path, cache: Path, workers: int | None) -> dict[str, float]:
    """``prepare_from_config`` with the packaged synthetic config's featurizer settings, timed."""
    import vocalis.features  # noqa: F401  (import torch before timing, as librosa is imported above)
    from vocalis.data.prepare import prepare_from_config

    cfg = {
        "source": "folder",
        "name": "bench",
        "root": str(root),
        "window_s": 3.0,
        "hop_s": 1.5,
        "features": {
            "sample_rate": 32_000,
            "n_fft": 1024,
            "hop_length": 320,
            "n_mels": 64,
            "f_min": 50.0,
            "f_max": 14_000.0,
            "top_db": 80.0,
        },
        "split": {"val": 0.15, "test": 0.15, "seed": 0},
        "prepare_workers": workers,
        "chunk_size": 32,
        "prepare_batch_size": 64,
    }
    before = _usage()["cpu_s"]
    t0 = time.perf_counter()
    result = prepare_from_config(cfg, {"cache_dir": str(cache)})
    seconds = time.perf_counter() - t0
    use = _usage()  # the pool has shut down: its workers are finished children now
    return {
        "clips": result.meta["n_clips"],
        "windows": result.meta["n_windows"],
        "seconds": seconds,
        **use,
        "cpu_s": use["cpu_s"] - before,
    }


def _child(
    mode: str, root: Path, cache: Path, workers: int | None, threads: int | None = None
) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", mode, "--root", str(root), "--cache", str(cache)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ)
    if threads:  # BLAS/OpenMP threads of the child (numpy's matmul in librosa's mel projection)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Generate the set, run both sides in subprocesses, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=40, help="clips per class (8 classes)")
    ap.add_argument("--workers", type=int, default=None, help="vocalis prepare workers (default: all cores)")
    ap.add_argument("--child", choices=["baseline", "vocalis"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = (
            run_baseline(args.root)
            if args.child == "baseline"
            else run_vocalis(args.root, args.cache, args.workers)
        )
        print(json.dumps(res))
        return

    from vocalis.data.synthetic import SynthSpec, generate

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        root = generate(Path(tmp) / "set", SynthSpec(classes=8, per_class=args.per_class, seed=123))
        load = os.getloadavg()[0]
        base = _child("baseline", root, Path(tmp) / "unused", None)
        base1 = _child("baseline", root, Path(tmp) / "unused", None, threads=1)
        ours = _child("vocalis", root, Path(tmp) / "cache", args.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data preparation: {base['clips']} clips (1-5 s, 16-48 kHz, WAV/FLAC), {cores} CPU cores")
    print(f"load average before: {load:.1f} (other processes share these cores)")
    cols = ("wall s", 7), ("clips/s", 8), ("CPU s", 7), ("peak RSS MiB", 13), ("worker peak MiB", 16)
    print(f"{'':22s} " + " ".join(f"{name:>{width}s}" for name, width in cols))
    rows = (
        ("seed (librosa loop)", base, False),
        ("seed, 1 BLAS thread", base1, False),
        ("vocalis data prepare", ours, True),
    )
    for name, r, kids in rows:
        worker = f"{r['peak_child_rss_mib']:16.0f}" if kids else f"{'-':>16s}"
        print(
            f"{name:22s} {r['seconds']:7.2f} {r['clips'] / r['seconds']:8.1f} {r['cpu_s']:7.2f} "
            f"{r['peak_rss_mib']:13.0f} {worker}"
        )
    for name, b in (("seed", base), ("seed, 1 BLAS thread", base1)):
        ratio = b["seconds"] / ours["seconds"] * ours["clips"] / b["clips"]
        cpu_ratio = b["cpu_s"] / ours["cpu_s"]
        print(f"throughput vocalis / {name}: {ratio:.1f}x wall clock, {cpu_ratio:.1f}x per CPU second")
    print(f"({ours.get('windows', 0):.0f} overlapping 3 s windows cached by vocalis)")


if __name__ == "__main__":
    main()
