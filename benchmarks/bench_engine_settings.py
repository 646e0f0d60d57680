"""The local predict engine under onnxruntime thread and spinning settings, with and without a decoding
process, side by side in one run (wall and CPU seconds): what decides ``vocalis predict``'s defaults.

On ``--clips`` short files (links to the ``--source`` recordings, cycled) through the demo network (random
weights, exported by the real exporter), it first times decoding alone and onnxruntime alone on the same
windows (1 and 2 threads, spinning on and off), then whole runs: "before" (one file at a time,
``Predictor.predict_stream``), "batched" (the engine decoding in line) and "pipelined" (one decoding
process), each setting ``--repeats`` times, alternating. CPU seconds count this process and its children.

    uv run python benchmarks/bench_engine_settings.py [--clips 875] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale as bs
from vocalis.contracts.card import MODEL_FILE, ModelCard
from vocalis.inference import Predictor
from vocalis.inference.jobs import cut_windows, decode_job, header_duration, plan_jobs


def session(artifact: Path, threads: int, spin: bool) -> ort.InferenceSession:
    """An onnxruntime session as ``vocalis.contracts.runtime.onnx_session`` opens it, spinning set."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(artifact / MODEL_FILE), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/animal-sounds"))
    parser.add_argument("--clips", type=int, default=875)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        artifact = bs.demo_artifact(tmp)
        if args.source.is_dir():
            clips = bs.replicate(args.source, args.clips, tmp / "clips")
        else:
            print(f"{args.source} is absent: generated clips (100, cycled) stand in for it")
            bs.synthetic_clips(100, tmp / "generated")
            clips = bs.replicate(tmp / "generated", args.clips, tmp / "clips")
        card = ModelCard.load(artifact)
        names = [str(f) for f in clips]
        durations = [header_duration(f) for f in names]
        hours = sum(durations) / 3600
        spec = Predictor(session(artifact, 2, True), card, artifact).window_spec()
        print(f"# {len(clips)} files, {hours:.3f} h, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        t, c = time.perf_counter(), time.process_time()
        decoded = [decode_job(j) for j in plan_jobs(names, durations, spec)]
        print(f"decoding alone: {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU")
        windows = np.concatenate([cut_windows(x, spec) for x in decoded if not x.error])
        for threads, spin in ((1, False), (1, True), (2, False), (2, True)):
            p = Predictor(session(artifact, threads, spin), card, artifact)
            p.predict_windows(windows[:64])  # warm-up
            t, c = time.perf_counter(), time.process_time()
            p.predict_windows(windows)
            print(
                f"onnxruntime alone on {len(windows)} windows, {threads} thread(s), spinning "
                f"{'on' if spin else 'off'}: {time.perf_counter() - t:.2f} s wall, "
                f"{time.process_time() - c:.2f} s CPU"
            )
        settings = [
            ("before", 2, True, None),
            ("before", 1, False, None),
            ("batched", 2, True, 0),
            ("batched", 2, False, 0),
            ("batched", 1, False, 0),
            ("pipelined", 2, True, 1),
            ("pipelined", 2, False, 1),
            ("pipelined", 1, False, 1),
        ]
        print(
            "\n| engine | threads | spinning | run | wall s | CPU s | files/s |"
            "\n|---|---:|---|---:|---:|---:|---:|"
        )
        for rep in range(args.repeats):
            for name, threads, spin, workers in settings:
                p = Predictor(session(artifact, threads, spin), card, artifact)
                if workers is None:
                    r = bs.measure(lambda p=p: bs.before(p, clips), hours, len(clips))
                else:
                    r = bs.measure(lambda p=p, w=workers: bs.run_local(p, clips, w), hours, len(clips))
                print(
                    f"| {name} | {threads} | {'on' if spin else 'off'} | {rep + 1} | {r['wall_s']:.2f} | "
                    f"{r['cpu_s']:.2f} | {r['files_s']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
