"""Classification metrics (scikit-learn) on accumulated logits."""

from __future__ import annotations

import numpy as np

# scikit-learn (and the scipy.stats it loads, ~0.7 s) is imported inside the functions that use it:
# every stage imports this package, and the evaluate, costs and embed stages never call them.


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, C] logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 and mAP (macro average precision over classes, as the papers' sklearn code).

    ``logits`` [N, C], ``labels`` [N]. Classes absent from ``labels`` are left out of the macro-F1
    and the mAP (their recall and AP are undefined; a mini dataset using 8 of AVE's 28 classes
    would otherwise score F1 over 20 empty classes).
    """
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score
    from sklearn.preprocessing import label_binarize

    pred = logits.argmax(axis=1)
    classes = np.arange(num_classes)
    onehot = label_binarize(labels, classes=classes)
    if num_classes == 2:  # label_binarize gives one column for two classes
        onehot = np.concatenate([1 - onehot, onehot], axis=1)
    present = onehot.sum(axis=0) > 0
    probs = softmax(logits.astype(np.float64))
    return {
        "acc": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=classes[present], average="macro", zero_division=0)),
        "map": float(average_precision_score(onehot[:, present], probs[:, present], average="macro")),
    }


def probe_accuracy(unimodal_logits: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Accuracy of each modality's own logits (its share of the fused prediction)."""
    from sklearn.metrics import accuracy_score

    return {m: float(accuracy_score(labels, lg.argmax(axis=1))) for m, lg in unimodal_logits.items()}


def per_class_accuracy(logits: dict[str, np.ndarray], labels: np.ndarray, classes: list) -> dict[str, dict[str, float]]:
    """{"fused" | modality: {class name: accuracy on that class's samples}} (absent classes left out)."""
    return {k: {str(c): float((lg.argmax(1)[labels == i] == i).mean()) for i, c in enumerate(classes) if (labels == i).any()}
            for k, lg in logits.items()}
