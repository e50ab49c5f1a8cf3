"""D&R (Diagnosing and Re-learning) against the authors' released code.

Transcribed from GeWu-Lab/Diagnosing_Relearning_ECCV2024 @ 025085ea82ed784c6ab6e5fb1b08bfe498dd0fc7,
``code/ours.py``: ``purity_score``, ``reinit_score`` (MinMaxScaler to [−1, 1], k-means with
``random_state=0``, |purity_train − purity_val|, tanh(λ·gap)), ``reinit`` (θ ← α·θ_init +
(1 − α)·θ for every encoder parameter) and the epoch test of ``main`` (after epoch e when
e % reinit_epoch == 0, e > 0, at most reinit_num times). ``script/ours.sh``: move_lambda 3,
reinit_epoch 20, reinit_num 3. The code's KMeans ran with scikit-learn's then-default 10
restarts; ours passes ``n_init=10`` (the default is 1 since scikit-learn 1.4).
"""

import numpy as np
import pytest
import torch
from sklearn import preprocessing
from sklearn.cluster import KMeans
from sklearn.metrics import accuracy_score

from mmbalance.methods import dr

from reference_models import linear_model


def purity_score(y_true, y_pred):
    """Diagnosing_Relearning_ECCV2024@025085e code/ours.py (verbatim, docstring and comments cut)."""
    y_voted_labels = np.zeros(y_true.shape)
    labels = np.unique(y_true)
    ordered_labels = np.arange(labels.shape[0])
    for k in range(labels.shape[0]):
        y_true[y_true == labels[k]] = ordered_labels[k]
    labels = np.unique(y_true)
    bins = np.concatenate((labels, [np.max(labels) + 1]), axis=0)
    for cluster in np.unique(y_pred):
        hist, _ = np.histogram(y_true[y_pred == cluster], bins=bins)
        winner = np.argmax(hist)
        y_voted_labels[y_pred == cluster] = winner
    return accuracy_score(y_true, y_voted_labels)


def reinit_score(move_lambda, n_classes, train_audio, train_visual, train_label, val_audio, val_visual, val_label):
    """code/ours.py reinit_score (``args`` unpacked, prints cut, ``n_init=10`` made explicit)."""
    all_feature = [train_audio, val_audio, train_visual, val_visual]
    stages = ['train_audio', 'val_audio', 'train_visual', 'val_visual']
    all_purity = []
    for idx, fea in enumerate(all_feature):
        result = fea
        scaler = preprocessing.MinMaxScaler(feature_range=(-1, 1))
        result = scaler.fit_transform(result)
        y_pred = KMeans(n_clusters=n_classes, random_state=0, n_init=10).fit_predict(result)
        if (stages[idx][:5] == 'train'):
            purity = purity_score(np.array(train_label), y_pred)
        else:
            purity = purity_score(np.array(val_label), y_pred)
        all_purity.append(purity)
    purity_gap_audio = np.abs(all_purity[0] - all_purity[1])
    purity_gap_visual = np.abs(all_purity[2] - all_purity[3])
    weight_audio = torch.tanh(torch.tensor(move_lambda * purity_gap_audio))
    weight_visual = torch.tanh(torch.tensor(move_lambda * purity_gap_visual))
    return weight_audio, weight_visual, all_purity


def reinit_param(init_weight, current_weight, weight):
    """code/ours.py reinit, one parameter (``.cuda()`` cut)."""
    return weight * init_weight + (1 - weight) * current_weight


def features(n, dim, spread, seed_phase):
    """Three classes around patterned centres; ``spread`` of patterned offsets (no RNG)."""
    k = np.arange(n)
    labels = k % 3
    centres = np.array([[2.0, 0.0, 1.0, -1.0][:dim], [-1.0, 2.0, 0.0, 1.0][:dim], [0.0, -2.0, -1.0, 2.0][:dim]])
    offsets = spread * np.sin(np.outer(k + seed_phase, np.arange(1, dim + 1)) * 0.91)
    return centres[labels] + offsets, labels


# purity of each set and the two α recorded from reinit_score (λ = 3)
REF_PURITY = [1.0, 0.9166666666666666, 0.8, 0.5]
REF_ALPHA = (0.24491866240370924, 0.7162978701990245)


def _sets():
    ta, ytr = features(30, 4, 0.3, 0.0)   # audio: well separated on train,
    va, yva = features(12, 4, 2.0, 0.5)   # blurred on val
    tv, _ = features(30, 4, 2.2, 1.0)     # visual: blurred everywhere
    vv, _ = features(12, 4, 3.0, 2.0)
    return ta, tv, ytr, va, vv, yva


def test_transcription_reproduces_recorded_outputs():
    wa, wv, purities = reinit_score(3.0, 3, *_sets())
    assert purities == pytest.approx(REF_PURITY, abs=1e-12)
    assert (float(wa), float(wv)) == pytest.approx(REF_ALPHA, rel=1e-9)


def test_purity_matches_released_code():
    labels = np.array([0, 2, 2, 5, 5, 5, 0, 2])  # a missing class index, as the code's relabelling handles
    clusters = np.array([1, 1, 0, 0, 0, 2, 2, 2])
    assert dr.purity(labels, clusters) == pytest.approx(purity_score(labels.copy(), clusters))


def test_reinit_strengths_match_released_code():
    ta, tv, ytr, va, vv, yva = _sets()
    ours = [dr.separability(x, y, 3) for x, y in ((ta, ytr), (va, yva), (tv, ytr), (vv, yva))]
    assert ours == pytest.approx(REF_PURITY, abs=1e-12)
    alphas = (dr.reinit_strength(ours[0], ours[1], 3.0), dr.reinit_strength(ours[2], ours[3], 3.0))
    assert alphas == pytest.approx(REF_ALPHA, rel=1e-9)


def test_soft_reinit_matches_released_code():
    model, init = linear_model(), linear_model(audio_scale=-0.5)
    params = model.modality_parameters("audio")
    want = [reinit_param(i.detach(), p.detach(), REF_ALPHA[0]) for p, i in zip(params, init.modality_parameters("audio"))]
    dr.soft_reinit(params, [p.detach() for p in init.modality_parameters("audio")], REF_ALPHA[0])
    for p, w in zip(params, want):
        torch.testing.assert_close(p.detach(), w)


def test_diagnosis_epochs_match_released_code():
    """The code diagnoses after epochs 20, 40, 60 of 90 (``ours.sh``); our hook runs at the start
    of the next epoch, so it fires at epochs 21, 41, 61."""
    every, times = 20, 3
    code, flag = [], 0
    for epoch in range(90):
        if (epoch % every == 0) & (epoch > 0):
            flag += 1
            if flag <= times:
                code.append(epoch)
    from mmbalance.methods import MethodContext, build_method

    method = build_method("dr", {"reinit_every": every, "reinit_num": times}, MethodContext(["audio", "visual"], 3, 90))
    method.init = {"audio": []}  # skip the θ_init copy: no trainer
    fired = []
    method.relearn = lambda trainer: fired.append(epoch)
    for epoch in range(90):
        method.on_epoch_start(epoch, None)
    assert fired == [e + 1 for e in code] == [21, 41, 61]
