"""Files of an evaluation: metrics.json, the confusion matrix image, per-class CSV, misclassified list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_metrics_json(metrics: dict[str, Any], path: Path) -> Path:
    """Write ``metrics`` as indented JSON."""
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def write_per_class_csv(metrics: dict[str, Any], path: Path) -> Path:
    """One row per class: precision, recall, f1, support."""
    rows = [{"class": name, **vals} for name, vals in metrics["per_class"].items()]
    pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"]).to_csv(path, index=False)
    return path


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """A row-normalised confusion matrix (each true class sums to 1) with class names, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in servers and CI
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    n = len(classes)
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=list(classes), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def misclassified_table(
    rows: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], top_k: int = 3
) -> pd.DataFrame:
    """The misclassified windows: path, start/end, true label and the ``top_k`` predictions."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    order = np.argsort(-probs[wrong], axis=1)[:, :top_k]
    out: dict[str, Any] = {
        "path": rows["path"].to_numpy()[wrong] if "path" in rows else [""] * len(wrong),
        "start_s": rows["start_s"].to_numpy()[wrong] if "start_s" in rows else np.nan,
        "end_s": rows["end_s"].to_numpy()[wrong] if "end_s" in rows else np.nan,
        "true": [classes[k] for k in y_true[wrong]],
    }
    for r in range(min(top_k, probs.shape[1])):
        out[f"pred_{r + 1}"] = [classes[k] for k in order[:, r]]
        out[f"prob_{r + 1}"] = np.round(probs[wrong, order[:, r]], 4)
    return pd.DataFrame(out)
