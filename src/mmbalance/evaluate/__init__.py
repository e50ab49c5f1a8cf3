"""Evaluation: metrics and (later) robustness."""

from mmbalance.evaluate.metrics import classification_metrics, probe_accuracy

__all__ = ["classification_metrics", "probe_accuracy"]
