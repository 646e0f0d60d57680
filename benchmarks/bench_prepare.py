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
- vocalis CLI: ``vocalis data prepare data=folder ...`` with the same settings, timed from starting the
  command to its exit (interpreter start-up, imports, Hydra config and the summary included): what a user
  waits for.

The baseline's timings exclude interpreter start-up and library imports (librosa's numba JIT is warmed on a
tiny signal first); the in-process vocalis row excludes imports too, worker-process start-up included.
The headline ratio is the CLI row against the faster of the two baseline runs, in wall-clock seconds
per clip (the target: >= 1.8x with 2 workers on 2 idle cores); CPU seconds (user + sys, the process and
its workers) give the same comparison per core, steadier on a shared machine.

    uv run python benchmarks/bench_prepare.py [--clips 900 | --clips 3000 | --per-class 40] [--workers N]
                                              [--repeats N]
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


def run_cli(root: Path, cache: Path, workers: int | None) -> dict[str, float]:
    """``vocalis data prepare`` as a user runs it, timed from start to exit (a subprocess)."""
    exe = Path(sys.executable).with_name("vocalis")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from vocalis.cli import main; main()"]
    cmd += [
        "data",
        "prepare",
        "data=folder",
        f"data.root={root}",
        "data.name=bench",
        "data.window_s=3.0",
        "data.hop_s=1.5",
        "data.split.seed=0",
        f"data.prepare_workers={workers or 'null'}",
        f"paths.cache_dir={cache}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    meta = json.loads(next(Path(cache).glob("bench-*/cache.json")).read_text())
    return {
        "clips": meta["n_clips"],
        "windows": meta["n_windows"],
        "seconds": seconds,
        "peak_rss_mib": after.ru_maxrss / 1024,
        "peak_child_rss_mib": after.ru_maxrss / 1024,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "output_lines": len(done.stdout.splitlines()),
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
    ap.add_argument("--clips", type=int, default=None, help="about this many clips (overrides --per-class)")
    ap.add_argument("--set-dir", type=Path, default=None, help="generate the set here and keep it (reused)")
    ap.add_argument("--workers", type=int, default=None, help="vocalis prepare workers (default: all cores)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of the four rows, one after the other; the table shows each row's median round and "
        "the headline the median of the rounds' ratios (this VM's speed drifts by 10-30 %% within minutes)",
    )
    ap.add_argument("--child", choices=["baseline", "vocalis", "cli"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "baseline":
            res = run_baseline(args.root)
        elif args.child == "cli":
            res = run_cli(args.root, args.cache, args.workers)
        else:
            res = run_vocalis(args.root, args.cache, args.workers)
        print(json.dumps(res))
        return

    from vocalis.data.synthetic import SynthSpec, generate

    per_class = -(-args.clips // 8) if args.clips else args.per_class
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        where = args.set_dir or Path(tmp) / "set"
        root = generate(where, SynthSpec(classes=8, per_class=per_class, seed=123))
        load = os.getloadavg()[0]
        rounds = []
        for i in range(max(1, args.repeats)):
            rounds.append(
                {
                    "base": _child("baseline", root, Path(tmp) / "unused", None),
                    "base1": _child("baseline", root, Path(tmp) / "unused", None, threads=1),
                    "ours": _child("vocalis", root, Path(tmp) / f"cache-{i}", args.workers),
                    "cli": _child("cli", root, Path(tmp) / f"cli-cache-{i}", args.workers),
                }
            )
        load_after = os.getloadavg()[0]

    def per_clip_ratio(b: dict[str, float], o: dict[str, float], key: str = "seconds") -> float:
        return b[key] / o[key] * o["clips"] / b["clips"]

    def median_round(key: str) -> dict[str, float]:
        ordered = sorted((rd[key] for rd in rounds), key=lambda x: x["seconds"])
        return ordered[(len(ordered) - 1) // 2]

    base, base1, ours, cli = (median_round(k) for k in ("base", "base1", "ours", "cli"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data preparation: {base['clips']} clips (1-5 s, 16-48 kHz, WAV/FLAC), {cores} CPU cores")
    print(f"load average before: {load:.1f}, after: {load_after:.1f} (other processes share these cores)")
    if len(rounds) > 1:
        print(f"{len(rounds)} rounds; each row's median round (by wall time)")
    cols = ("wall s", 7), ("clips/s", 8), ("CPU s", 7), ("CPU ms/clip", 12), ("peak RSS MiB", 13)
    print(f"{'':30s} " + " ".join(f"{name:>{width}s}" for name, width in cols))
    rows = (
        ("reference (librosa loop)", base),
        ("reference, 1 BLAS thread", base1),
        ("vocalis prepare (in process)", ours),
        ("vocalis data prepare (CLI)", cli),
    )
    for name, r in rows:
        print(
            f"{name:30s} {r['seconds']:7.2f} {r['clips'] / r['seconds']:8.1f} {r['cpu_s']:7.2f} "
            f"{1e3 * r['cpu_s'] / r['clips']:12.2f} {r['peak_rss_mib']:13.0f}"
        )
    for who, o in (("in process", ours), ("CLI, start included", cli)):
        for name, b in (("reference", base), ("reference, 1 BLAS thread", base1)):
            ratio, cpu_ratio = per_clip_ratio(b, o), per_clip_ratio(b, o, "cpu_s")
            print(f"vocalis ({who}) / {name}: {ratio:.2f}x wall clock, {cpu_ratio:.2f}x per CPU second")
    # each round's headline: its CLI row against the faster of its own two loops
    heads = sorted(
        per_clip_ratio(min(rd["base"], rd["base1"], key=lambda x: x["seconds"]), rd["cli"]) for rd in rounds
    )
    if len(rounds) > 1:
        print("rounds' headline ratios: " + ", ".join(f"{h:.2f}x" for h in heads))
    median = (
        heads[len(heads) // 2]
        if len(heads) % 2
        else sum(heads[len(heads) // 2 - 1 : len(heads) // 2 + 1]) / 2
    )
    print(
        f"HEADLINE vocalis data prepare (CLI, start included, {args.workers or cores} workers) / the faster "
        f"librosa loop: {median:.2f}x wall clock"
        + (f" (median of {len(heads)} rounds, {heads[0]:.2f}-{heads[-1]:.2f}x)" if len(heads) > 1 else "")
        + " (target >= 1.8x on 2 idle cores)"
    )
    print(f"({ours.get('windows', 0):.0f} overlapping 3 s windows cached by vocalis)")


if __name__ == "__main__":
    main()
