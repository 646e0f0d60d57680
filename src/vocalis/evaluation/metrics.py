"""Classification metrics from true labels and predicted probabilities (numpy + scikit-learn)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def macro_auroc(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """One-vs-rest AUROC averaged over the classes present in ``y_true`` with both outcomes.

    ``None`` when no class has both positive and negative examples (e.g. a one-class split).
    """
    scores = []
    for k in range(probs.shape[1]):
        pos = y_true == k
        if pos.any() and (~pos).any():
            scores.append(roc_auc_score(pos.astype(int), probs[:, k]))
    return float(np.mean(scores)) if scores else None


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, macro AUROC, per-class P/R/F1/support, confusion matrix.

    Macro averages run over every class of the model (a class absent from the split counts as F1 0 only
    when it was predicted; scikit-learn's ``zero_division=0``).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on classes absent from a tiny split
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        bal = balanced_accuracy_score(y_true, y_pred) if len(y_true) else 0.0
        macro_f1 = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    per_class = {
        name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, name in enumerate(classes)
    }
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(macro_f1),
        "balanced_accuracy": float(bal),
        "macro_auroc": macro_auroc(y_true, probs),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def clip_accuracy(rows: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """Accuracy per clip (mean of its windows' probabilities), when the manifest names clips."""
    import pandas as pd  # the evaluation tables need it; window metrics do not

    if "clip_id" not in rows or len(rows) == 0:
        return None
    df = pd.DataFrame(probs)
    df["clip"] = rows["clip_id"].to_numpy()
    mean = df.groupby("clip", sort=False).mean()
    truth = pd.Series(y_true, index=rows["clip_id"].to_numpy()).groupby(level=0, sort=False).first()
    return float((mean.to_numpy().argmax(axis=1) == truth.loc[mean.index].to_numpy()).mean())
