"""Robustness study: accuracy under controlled shifts, and how often drift monitoring notices them.

For a trained run and its exported artifact (exported here, with its drift reference, when the folder
does not exist yet), every recording of the run's held-out test split is scored unshifted and under each
shift of :mod:`vocalis.evaluation.shifts` at each of its default strengths. Each recording goes through
the exported model once per setting (:func:`vocalis.monitoring.reference.traffic_row`: what the service
logs, from one session run per batch), which gives both its prediction (accuracy: argmax of the mean
window probabilities) and its prediction-log row (audio summary, top label, confidence, projected
embedding).

Drift: for each setting, ``--draws`` random draws of ``--draw-size`` recordings (without replacement) are
tested against the artifact's reference with the same tests as ``vocalis monitor drift`` (scipy engine,
p < 0.05, detected at a drift share >= 0.5); the detection rate is the share of draws flagged. Unshifted
draws give the false-alarm rate. Each draw is also tested without the embedding columns, to show what
the embedding adds. Finally the whole test split, unshifted and under two clear shifts, is tested with
Evidently itself (the numbers docs/monitoring.md reports).

    uv run python benchmarks/bench_robustness.py --run runs/folder_cpu --artifact artifacts/folder_cpu \\
        --json docs/robustness.json --plot docs/robustness.png
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis.evaluation.shifts import (
    SHIFT_KINDS,
    STRENGTH_UNITS,
    apply_shift,
    default_strengths,
    split_recordings,
)
from vocalis.monitoring.drift import compute_drift
from vocalis.monitoring.embedding import EMBEDDING_COLUMNS
from vocalis.monitoring.reference import (
    PROB_PREFIX,
    Reference,
    load_reference,
    resolve_cache_dir,
    traffic_row,
)

log = logging.getLogger("bench_robustness")

#: the two shifts docs/monitoring.md's whole-split drift check uses (clearly shifted input)
CLEAR_SHIFTS: list[tuple[str, float]] = [("noise", 0.0), ("lowpass", 4000.0)]


def _rows(
    predictor: Any, recordings: Any, kind: str | None, strength: float | None, seed: int
) -> pd.DataFrame:
    out = []
    for i, (wave, label) in enumerate(zip(recordings.waves, recordings.labels, strict=True)):
        x = (
            wave
            if kind is None
            else apply_shift(wave, kind, float(strength), recordings.sample_rate, seed + i)
        )
        row, _ = traffic_row(predictor, x, name=recordings.paths[i])
        row["label_index"] = int(label)
        out.append(row)
    return pd.DataFrame(out)


def _accuracy(frame: pd.DataFrame, classes: list[str]) -> float:
    probs = frame[[PROB_PREFIX + c for c in classes]].to_numpy()
    return float(np.mean(probs.argmax(axis=1) == frame["label_index"].to_numpy()))


def _detection(ref: Reference, frame: pd.DataFrame, draws: int, size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    no_emb = frame.drop(columns=[c for c in EMBEDDING_COLUMNS if c in frame.columns])
    hits = hits_no_emb = 0
    shares = []
    for _ in range(draws):
        idx = rng.choice(len(frame), size=min(size, len(frame)), replace=False)
        r = compute_drift(ref, frame.iloc[idx], engine="scipy")
        hits += r.drift_detected
        shares.append(r.drift_share)
        hits_no_emb += compute_drift(ref, no_emb.iloc[idx], engine="scipy").drift_detected
    return {
        "detection_rate": hits / draws,
        "detection_rate_without_embedding": hits_no_emb / draws,
        "mean_drift_share": float(np.mean(shares)),
    }


def _plot(results: list[dict[str, Any]], clean: float, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHIFT_KINDS), figsize=(3.2 * len(SHIFT_KINDS), 3.2), sharey=True)
    for ax, kind in zip(axes, SHIFT_KINDS, strict=True):
        pts = sorted((r["strength"], r["accuracy"]) for r in results if r["shift"] == kind)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ax.axhline(clean, color="grey", linestyle="--", linewidth=1, label="unshifted")
        ax.set_title(kind)
        ax.set_xlabel(STRENGTH_UNITS[kind])
        if kind == "lowpass":
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xticks([p[0] for p in pts], [f"{p[0] / 1000:g}k" for p in pts])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (recordings)")
    axes[0].set_ylim(0, 1.03)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run the study and write the JSON figures and the plot."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--artifact", type=Path, required=True, help="its artifact (exported when missing)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--draw-size", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("docs/robustness.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/robustness.png"))
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from --json")
    args = parser.parse_args()
    if args.replot:
        done = json.loads(args.json.read_text())
        _plot(done["shifts"], done["unshifted_accuracy"], args.plot)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("vocalis").setLevel(logging.WARNING)

    from vocalis.inference import Predictor

    t0 = time.perf_counter()
    if not (args.artifact / "model.onnx").is_file():
        from vocalis.export.onnx import export_artifact

        export_artifact(args.run, args.artifact)
    predictor = Predictor.from_dir(args.artifact)
    ref = load_reference(args.artifact)
    classes = predictor.classes
    recordings = split_recordings(resolve_cache_dir(args.run), args.split, classes, predictor.sample_rate)
    log.info("%d %s recordings, reference of %d", len(recordings), args.split, len(ref))

    clean_frame = _rows(predictor, recordings, None, None, args.seed)
    clean_acc = _accuracy(clean_frame, classes)
    frames: dict[tuple[str, float], pd.DataFrame] = {}
    results = []
    for kind in SHIFT_KINDS:
        for strength in default_strengths(kind, predictor.sample_rate):
            frame = _rows(predictor, recordings, kind, strength, args.seed)
            frames[(kind, strength)] = frame
            entry = {"shift": kind, "strength": strength, "accuracy": _accuracy(frame, classes)}
            entry.update(_detection(ref, frame, args.draws, args.draw_size, args.seed))
            log.info("%s", entry)
            results.append(entry)
    false_alarm = _detection(ref, clean_frame, args.draws, args.draw_size, args.seed)

    whole: dict[str, Any] = {}
    for name, frame in [
        ("unshifted", clean_frame),
        *[(f"{k} {s:g}", frames[(k, s)]) for k, s in CLEAR_SHIFTS],
    ]:
        r = compute_drift(ref, frame, engine="evidently", min_rows=10).to_dict()
        whole[name] = {
            "drift_detected": r["drift_detected"],
            "drift_share": r["drift_share"],
            "n_current": r["sample_sizes"]["current"],
            "drifted": [t["column"] for t in r["tests"] if t["drifted"]],
            "p_values": {t["column"]: t["p_value"] for t in r["tests"]},
        }

    out = {
        "run": str(args.run),
        "artifact": str(args.artifact),
        "model_version": predictor.version,
        "split": args.split,
        "n_recordings": len(recordings),
        "n_reference": len(ref),
        "unshifted_accuracy": clean_acc,
        "false_alarm": false_alarm,
        "draws": args.draws,
        "draw_size": args.draw_size,
        "shifts": results,
        "whole_split_drift": whole,
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")
    _plot(results, clean_acc, args.plot)
    log.info("wrote %s and %s in %.0f s", args.json, args.plot, out["seconds"])


if __name__ == "__main__":
    main()
