"""Evaluation: metrics, the confusion matrix, the per-class report and the misclassified windows.

The checkpoint evaluation (:mod:`vocalis.evaluation.evaluate`) needs torch; it is imported when first
asked for, so the metrics and the report serve runs that never import torch (a transfer head).
"""

from typing import Any

from vocalis.evaluation.metrics import classification_metrics

__all__ = ["EvaluationResult", "classification_metrics", "evaluate_checkpoint", "evaluate_run"]

_EVALUATE = ("EvaluationResult", "evaluate_checkpoint", "evaluate_run")


def __getattr__(name: str) -> Any:
    if name in _EVALUATE:
        from vocalis.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'vocalis.evaluation' has no attribute '{name}'")
