"""Evaluation: metrics and (later) robustness."""

from mmbalance.evaluate.metrics import classification_metrics, per_class_accuracy, probe_accuracy

__all__ = ["classification_metrics", "per_class_accuracy", "probe_accuracy"]
