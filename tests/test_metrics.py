"""Classification metrics against hand-computed values."""

import numpy as np
import pytest

from mmbalance.evaluate.metrics import classification_metrics, per_class_accuracy, probe_accuracy


def test_absent_classes_left_out_of_macro_f1_and_map():
    # 4-way head, test labels only use classes 0 and 1 (as mini AVE uses 8 of 28 classes).
    logits = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0], [0, 3.0, 0, 0]])
    labels = np.array([0, 1, 1, 1])
    m = classification_metrics(logits, labels, num_classes=4)
    assert m["acc"] == pytest.approx(0.75)
    # class 0: P=1, R=1 -> F1 1; class 1: P=1 (2/2), R=2/3 -> F1 0.8; mean over present classes only
    assert m["macro_f1"] == pytest.approx(0.9)
    # AP class 0: the one positive ranks first -> 1; class 1: positives at ranks 1, 2 (tied
    # scores), third positive ranked among the 0-score tail -> (1 + 1 + 3/4) / 3 = 11/12
    assert m["map"] == pytest.approx((1 + 11 / 12) / 2)


def test_binary_metrics():
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([0, 1, 1])
    m = classification_metrics(logits, labels, num_classes=2)
    assert m["acc"] == pytest.approx(2 / 3)
    # class 0: P 1/2, R 1 -> 2/3; class 1: P 1, R 1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_probe_and_per_class_accuracy():
    lg = {"audio": np.array([[1.0, 0], [1.0, 0], [0, 1.0]])}
    labels = np.array([0, 1, 1])
    assert probe_accuracy(lg, labels) == {"audio": pytest.approx(2 / 3)}
    assert per_class_accuracy(lg, labels, ["a", "b", "c"]) == {"audio": {"a": 1.0, "b": 0.5}}
