"""Greedy (conditional learning speed) against the authors' released code.

Transcribed from nyukat/greedy_multimodal_learning @ a190e03755bd8d0883b2c5c0cd7921d2561ce2ee:
``src/callbacks.py`` ``Bias_Mitigation_Strong`` (``compute_BDR``, ``on_backward_end``,
``on_epoch_begin``) and ``src/balanced_mmtm.py`` ``MMTM_mitigate.forward`` (the default branch:
no ``SEonly``, no ``shareweight``, no ``turnoff_cross_modal_flow``). ``configs/training.gin``:
epsilon 0.01, curation_windowsize 5, starting_epoch 2. The code's MMTMs sit between ResNet
stages; ours acts on the final features, so the code's MMTM is applied to [B, D] features here
(its squeeze ``view(B, C, -1).mean(-1)`` is then the identity). Modality 0 = the code's
``visual`` branch (``net_view_0``), modality 1 = ``skeleton`` (``net_view_1``).

Code and paper: the code averages modality 0's gate for *both* running averages
(``running_avg_weight_skeleton`` from ``vis_out``); each modality's own gate is averaged here,
so the re-balancing steps of modality 1 differ (checked below as a known difference).
"""

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmbalance.methods import MethodContext, build_method

from reference_models import LABELS, NUM_CLASSES, linear_inputs, linear_model


class MMTM_mitigate(nn.Module):
    """balanced_mmtm.py MMTM_mitigate, default branch (device and unused options cut)."""

    def __init__(self, dim_visual, dim_skeleton, ratio):
        super().__init__()
        dim = dim_visual + dim_skeleton
        dim_out = int(2 * dim / ratio)
        self.running_avg_weight_visual = torch.zeros(dim_visual)
        self.running_avg_weight_skeleton = torch.zeros(dim_visual)
        self.step = 0
        self.fc_squeeze = nn.Linear(dim, dim_out)
        self.fc_visual = nn.Linear(dim_out, dim_visual)
        self.fc_skeleton = nn.Linear(dim_out, dim_skeleton)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, visual, skeleton, curation_mode=False, caring_modality=0):
        squeeze_array = []
        for tensor in [visual, skeleton]:
            tview = tensor.view(tensor.shape[:2] + (-1,))
            squeeze_array.append(torch.mean(tview, dim=-1))
        squeeze = torch.cat(squeeze_array, 1)
        excitation = self.fc_squeeze(squeeze)
        excitation = self.relu(excitation)
        vis_out = self.fc_visual(excitation)
        sk_out = self.fc_skeleton(excitation)
        vis_out = self.sigmoid(vis_out)
        sk_out = self.sigmoid(sk_out)
        self.running_avg_weight_visual = (vis_out.mean(0) + self.running_avg_weight_visual * self.step).detach() / (self.step + 1)
        self.running_avg_weight_skeleton = (vis_out.mean(0) + self.running_avg_weight_skeleton * self.step).detach() / (self.step + 1)
        self.step += 1
        if not curation_mode:
            dim_diff = len(visual.shape) - len(vis_out.shape)
            vis_out = vis_out.view(vis_out.shape + (1,) * dim_diff)
            dim_diff = len(skeleton.shape) - len(sk_out.shape)
            sk_out = sk_out.view(sk_out.shape + (1,) * dim_diff)
        else:
            if caring_modality == 0:
                dim_diff = len(skeleton.shape) - len(sk_out.shape)
                sk_out = sk_out.view(sk_out.shape + (1,) * dim_diff)
                dim_diff = len(visual.shape) - len(vis_out.shape)
                vis_out = torch.stack(vis_out.shape[0] * [self.running_avg_weight_visual]).view(vis_out.shape + (1,) * dim_diff)
            elif caring_modality == 1:
                dim_diff = len(visual.shape) - len(vis_out.shape)
                vis_out = vis_out.view(vis_out.shape + (1,) * dim_diff)
                dim_diff = len(skeleton.shape) - len(sk_out.shape)
                sk_out = torch.stack(sk_out.shape[0] * [self.running_avg_weight_skeleton]).view(sk_out.shape + (1,) * dim_diff)
        return visual * vis_out, skeleton * sk_out


class BiasMitigationStrong:
    """callbacks.py Bias_Mitigation_Strong: compute_BDR, on_backward_end, on_epoch_begin."""

    def __init__(self, model, epsilon, curation_windowsize, starting_epoch,
                 branchnames=('net_view_0', 'net_view_1'), MMTMnames=('visual', 'skeleton')):
        self.model, self.epsilon, self.curation_windowsize, self.starting_epoch = model, epsilon, curation_windowsize, starting_epoch
        self.branchnames, self.MMTMnames = list(branchnames), list(MMTMnames)
        self.M_bypass_modal_0 = self.M_bypass_modal_1 = self.M_main_modal_0 = self.M_main_modal_1 = 0
        self.curation_mode, self.caring_modality, self.unlock = False, None, False

    def compute_BDR(self):
        wn_main, wn_bypass = [0] * len(self.branchnames), [0] * len(self.branchnames)
        gn_main, gn_bypass = [0] * len(self.branchnames), [0] * len(self.branchnames)
        for name, parameter in self.model.named_parameters():
            wn = (parameter ** 2).sum().item()
            gn = (parameter.grad.data ** 2).sum().item()
            if 'mmtm' in name:
                shared = True
                for ind, modal in enumerate(self.MMTMnames):
                    if modal in name:
                        wn_bypass[ind] += wn
                        gn_bypass[ind] += gn
                        shared = False
                if shared:
                    for ind, modal in enumerate(self.MMTMnames):
                        wn_bypass[ind] += wn
                        gn_bypass[ind] += gn
            else:
                for ind, modal in enumerate(self.branchnames):
                    if modal in name:
                        wn_main[ind] += wn
                        gn_main[ind] += gn
        self.M_bypass_modal_0 += gn_bypass[0] / wn_bypass[0]
        self.M_bypass_modal_1 += gn_bypass[1] / wn_bypass[1]
        self.M_main_modal_0 += gn_main[0] / wn_main[0]
        self.M_main_modal_1 += gn_main[1] / wn_main[1]
        BDR_0 = np.log10(self.M_bypass_modal_0 / self.M_main_modal_0)
        BDR_1 = np.log10(self.M_bypass_modal_1 / self.M_main_modal_1)
        return BDR_0 - BDR_1

    def on_backward_end(self):
        if self.unlock:
            if not self.curation_mode:
                self.d_BDR = self.compute_BDR()
                if abs(self.d_BDR) > self.epsilon:
                    biased_direction = np.sign(self.d_BDR)
                    self.curation_mode = True
                    self.curation_step = 0
                    if biased_direction == -1:
                        self.caring_modality = 1
                    elif biased_direction == 1:
                        self.caring_modality = 0
                else:
                    self.curation_mode = False
                    self.caring_modality = 0
            else:
                self.curation_step += 1
                if self.curation_step == self.curation_windowsize:
                    self.curation_mode = False
        else:
            self.d_BDR = self.compute_BDR()
            self.curation_mode = False
            self.caring_modality = 0

    def on_epoch_begin(self, epoch):
        if epoch >= self.starting_epoch:
            self.unlock = True


class CodeNet(nn.Module):
    """The code's parameter names: ``net_view_0`` / ``net_view_1`` branches, an ``mmtm`` block."""

    def __init__(self, ours, method):
        super().__init__()
        self.net_view_0, self.net_view_1 = ours.encoders["audio"], ours.encoders["visual"]
        self.mmtm = MMTM_mitigate(3, 3, 4)
        self.mmtm.fc_squeeze = method.mmtm.squeeze
        self.mmtm.fc_visual, self.mmtm.fc_skeleton = method.mmtm.excite["audio"], method.mmtm.excite["visual"]


def setup(cfg):
    model = linear_model(audio_scale=2.0)
    method = build_method("greedy", {"ratio": 4, **cfg}, MethodContext(["audio", "visual"], NUM_CLASSES, 10))
    model.method_modules.update(method.modules(model.feature_dims, NUM_CLASSES))
    torch.manual_seed(0)
    for p in method.mmtm.parameters():  # patterned, so gates differ between modalities
        with torch.no_grad():
            p.copy_(torch.sin(torch.arange(p.numel(), dtype=torch.float32) * 1.3 + p.numel()).reshape(p.shape))
    return model, method, CodeNet(model, method)


# recorded from BiasMitigationStrong over 6 steps (unlocked, ε 0.01, window 2): d_BDR where computed
REF_D_BDR = [0.5938418061811027, None, None, 0.6232591727404762, None, None]


def run_steps(model, method, code, epochs, steps_per_epoch=3, lr=0.5):
    """Train with our hooks; after each backward feed the same gradients to the code's callback.
    Returns per step (our logged speed or None, our curation/caring, the code's)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    inputs, rows = linear_inputs(), []
    for epoch in range(epochs):
        method.ctx.epoch = epoch
        code.on_epoch_begin(epoch)
        for _ in range(steps_per_epoch):
            opt.zero_grad()
            method.ctx.logs = {}
            out = method.forward(model, inputs, LABELS)
            method.loss(out, LABELS).backward()
            method.after_backward(model, out, LABELS)
            was = code.curation_mode
            code.on_backward_end()
            rows.append({"ours": (method.ctx.logs.get("speed", [None])[0], method.curation, method.caring if method.curation else None),
                         "code": (None if was else code.d_BDR, code.curation_mode, code.caring_modality if code.curation_mode else None)})
            opt.step()
    return rows


def test_transcription_reproduces_recorded_speeds():
    model, method, net = setup({"alpha": 0.01, "window": 2})
    code = BiasMitigationStrong(net, epsilon=0.01, curation_windowsize=2, starting_epoch=0)
    rows = run_steps(model, method, code, epochs=2)
    got = [r["code"][0] for r in rows]
    assert [g is None for g in got] == [r is None for r in REF_D_BDR]
    assert [g for g in got if g is not None] == pytest.approx([r for r in REF_D_BDR if r is not None], rel=1e-5)


@pytest.mark.parametrize("start", [0, 1])
def test_speeds_and_rebalancing_windows_match_released_code(start):
    model, method, net = setup({"alpha": 0.01, "window": 2, "start_epoch": start})
    code = BiasMitigationStrong(net, epsilon=0.01, curation_windowsize=2, starting_epoch=start)
    rows = run_steps(model, method, code, epochs=3)
    for i, r in enumerate(rows):
        (s_ours, cur_ours, care_ours), (s_code, cur_code, care_code) = r["ours"], r["code"]
        assert (cur_ours, care_ours) == (cur_code, care_code), f"step {i}"
        if s_code is not None:
            assert s_ours == pytest.approx(float(s_code), rel=1e-5), f"step {i}"


def test_gates_match_released_mmtm_in_normal_and_modality_0_steps():
    model, method, net = setup({})
    feats = model.encode(linear_inputs())
    for curation in (False, True):
        method.curation, method.caring = curation, 0
        ours = method._gates(feats, train=True)
        a, v = net.mmtm(feats["audio"], feats["visual"], curation_mode=curation, caring_modality=0)
        torch.testing.assert_close(feats["audio"] * ours["audio"], a)
        torch.testing.assert_close(feats["visual"] * ours["visual"], v)


def test_modality_1_running_average_is_its_own_gate_not_the_codes():
    """The known difference: in modality 1's re-balancing steps the code's running average is of
    modality 0's gate; ours is of modality 1's."""
    model, method, net = setup({})
    feats = model.encode(linear_inputs())
    method.curation, method.caring = True, 1
    ours = method._gates(feats, train=True)
    gates = method.mmtm(feats)
    torch.testing.assert_close(ours["visual"][0], gates["visual"].detach().mean(0))
    _, v = net.mmtm(feats["audio"], feats["visual"], curation_mode=True, caring_modality=1)
    torch.testing.assert_close(v, feats["visual"] * gates["audio"].detach().mean(0))
