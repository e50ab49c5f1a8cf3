"""G-Blending's weight estimate against BalanceBenchmark's released code.

Transcribed from GeWu-Lab/BalanceBenchmark @ 4c1482fca5aaa8d4278af8e26020daa039e3ccf3,
``balancemm/trainer/GBlending_trainer.py`` ``super_epoch_origin``: per head, from the training
and validation losses at the first and last epoch of a super-epoch, g = L^V_now − L^V_pre,
o = (L^V_now − L^T_now) − (L^V_pre − L^T_pre), w = |g| / o², normalised over the heads.
(The original authors' code, Wang et al. CVPR 2020, is not public.)

Code and paper: the paper's w ∝ ΔG/ΔO² with ΔG the fall of the held-out loss; the code takes
|g|, so a head whose held-out loss rose also gains weight. Our default (``gain: clamp``) gives
it 0; ``gain: abs`` is the code's form. Both are checked.
"""

import pytest

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.g_blending import blend_weights


def code_weights(losses):
    """GBlending_trainer.py super_epoch_origin, the weight arithmetic (verbatim from ``g =``).
    ``losses``: head → (pre_train, pre_val, now_train, now_val)."""
    weights = {}
    for modality, (pre_train_loss, pre_validation_loss, now_train_loss, now_validation_loss) in losses.items():
        g = now_validation_loss - pre_validation_loss
        o_pre = pre_validation_loss - pre_train_loss
        o_now = now_validation_loss - now_train_loss
        o = o_now - o_pre
        weights[modality] = abs((g) / (o ** 2))
    sums = sum(weights.values())
    for modality in weights.keys():
        weights[modality] /= sums
    return weights


IMPROVING = {"audio": (2.0, 2.1, 1.2, 1.7), "visual": (2.2, 2.3, 1.9, 2.2), "output": (2.0, 2.1, 1.0, 1.6)}
ONE_WORSE = {"audio": (2.0, 2.1, 1.2, 1.7), "visual": (2.2, 2.3, 1.9, 2.45), "output": (2.0, 2.1, 1.0, 1.6)}
# recorded from code_weights
REF_IMPROVING = {"audio": 0.3571428571428586, "visual": 0.35714285714285476, "output": 0.28571428571428664}
REF_ONE_WORSE = {"audio": 0.4770318021201416, "visual": 0.14134275618374548, "output": 0.38162544169611295}


def _ours(losses, gain):
    before = {k: (v[0], v[1]) for k, v in losses.items()}
    after = {k: (v[2], v[3]) for k, v in losses.items()}
    return blend_weights(before, after, gain=gain)


def test_transcription_reproduces_recorded_weights():
    assert code_weights(IMPROVING) == pytest.approx(REF_IMPROVING, rel=1e-12)
    assert code_weights(ONE_WORSE) == pytest.approx(REF_ONE_WORSE, rel=1e-12)


@pytest.mark.parametrize("gain", ["clamp", "abs"])
def test_weights_match_released_code_when_every_head_generalises(gain):
    assert _ours(IMPROVING, gain) == pytest.approx(REF_IMPROVING, rel=1e-9)


def test_abs_gain_is_the_code_form_when_a_head_got_worse():
    assert _ours(ONE_WORSE, "abs") == pytest.approx(REF_ONE_WORSE, rel=1e-9)


def test_clamp_gain_gives_a_worsening_head_no_weight():
    w = _ours(ONE_WORSE, "clamp")
    assert w["visual"] == 0.0
    assert w["audio"] / w["output"] == pytest.approx(REF_ONE_WORSE["audio"] / REF_ONE_WORSE["output"], rel=1e-9)


def test_gain_option_is_checked():
    with pytest.raises(ValueError, match="g_blending: unknown gain 'sign'"):
        build_method("g_blending", {"gain": "sign"}, MethodContext(["audio", "visual"], 3, 10))
