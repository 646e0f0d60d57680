"""Evaluation: metrics, the confusion matrix, the per-class report and the misclassified windows."""

from vocalis.evaluation.evaluate import EvaluationResult, evaluate_checkpoint, evaluate_run
from vocalis.evaluation.metrics import classification_metrics

__all__ = ["EvaluationResult", "classification_metrics", "evaluate_checkpoint", "evaluate_run"]
