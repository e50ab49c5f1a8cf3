"""Fusion heads and the MMTM block against the released modules they follow.

Transcribed (module code verbatim but for Python 2 ``super`` calls and initialisation):
- GeWu-Lab/OGM-GE_CVPR2022 @ 343dc1d95c9bda88f105c0da8d24f185e0e98b54 ``models/fusion_modules.py``:
  ``SumFusion``, ``ConcatFusion``, ``FiLM``, ``GatedFusion``;
- njustkmg/IJCAI25-IPRM @ 0bb457fe69320948bf37061c836b516bbcb236e9 ``models/fusion_modules.py``:
  ``CMML3`` (our ``weight`` fusion, ``form: iprm_code``; three modalities);
- haamoon/mmtm @ 1c81cfefad5532cfb39193b8af3840ac3346e897 ``mmtm.py``: ``MMTM`` (our
  ``models.backbones.MMTM``; the video stream as [B, C, T, H, W], ours as T frame rows).
Each transcription gets our module's weights; the outputs must agree. Fixed patterned inputs.
"""

import torch
import torch.nn as nn

from mmbalance.models import FUSIONS
from mmbalance.models.backbones import MMTM as OurMMTM

from reference_models import pattern


class SumFusion(nn.Module):
    def __init__(self, input_dim=512, output_dim=100):
        super().__init__()
        self.fc_x = nn.Linear(input_dim, output_dim)
        self.fc_y = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        output = self.fc_x(x) + self.fc_y(y)
        return x, y, output


class ConcatFusion(nn.Module):
    def __init__(self, input_dim=1024, output_dim=100):
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        output = torch.cat((x, y), dim=1)
        output = self.fc_out(output)
        return x, y, output


class FiLM(nn.Module):
    def __init__(self, input_dim=512, dim=512, output_dim=100, x_film=True):
        super().__init__()
        self.dim = input_dim
        self.fc = nn.Linear(input_dim, 2 * dim)
        self.fc_out = nn.Linear(dim, output_dim)
        self.x_film = x_film

    def forward(self, x, y):
        if self.x_film:
            film = x
            to_be_film = y
        else:
            film = y
            to_be_film = x
        gamma, beta = torch.split(self.fc(film), self.dim, 1)
        output = gamma * to_be_film + beta
        output = self.fc_out(output)
        return x, y, output


class GatedFusion(nn.Module):
    def __init__(self, input_dim=512, dim=512, output_dim=100, x_gate=True):
        super().__init__()
        self.fc_x = nn.Linear(input_dim, dim)
        self.fc_y = nn.Linear(input_dim, dim)
        self.fc_out = nn.Linear(dim, output_dim)
        self.x_gate = x_gate
        self.sigmoid = nn.Sigmoid()

    def forward(self, x, y):
        out_x = self.fc_x(x)
        out_y = self.fc_y(y)
        if self.x_gate:
            gate = self.sigmoid(out_x)
            output = self.fc_out(torch.mul(gate, out_y))
        else:
            gate = self.sigmoid(out_y)
            output = self.fc_out(torch.mul(out_x, gate))
        return out_x, out_y, output


class CMML3(nn.Module):
    def __init__(self, input_dim=512, output_dim=100):
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x, y, z):
        x_attention = self.softmax(x.clone())
        y_attention = self.softmax(y.clone())
        z_attention = self.softmax(z.clone())
        sum_total = x_attention + y_attention + z_attention
        x_attention = x_attention / sum_total
        y_attention = y_attention / sum_total
        z_attention = z_attention / sum_total
        supervise_feature_hidden = x_attention * x + y_attention * y + z_attention * z
        output = self.fc_out(supervise_feature_hidden)
        output_x = self.fc_out(x)
        output_y = self.fc_out(y)
        output_z = self.fc_out(z)
        return output_x, output_y, output_z, output


class MMTM(nn.Module):
    def __init__(self, dim_visual, dim_skeleton, ratio):
        super().__init__()
        dim = dim_visual + dim_skeleton
        dim_out = int(2 * dim / ratio)
        self.fc_squeeze = nn.Linear(dim, dim_out)
        self.fc_visual = nn.Linear(dim_out, dim_visual)
        self.fc_skeleton = nn.Linear(dim_out, dim_skeleton)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, visual, skeleton):
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
        dim_diff = len(visual.shape) - len(vis_out.shape)
        vis_out = vis_out.view(vis_out.shape + (1,) * dim_diff)
        dim_diff = len(skeleton.shape) - len(sk_out.shape)
        sk_out = sk_out.view(sk_out.shape + (1,) * dim_diff)
        return visual * vis_out, skeleton * sk_out


D, C = 6, 4
TWO = {"audio": D, "visual": D}


def feats(mods=("audio", "visual")):
    return {m: pattern(5, D, phase=0.9 * i, scale=1.5) for i, m in enumerate(mods)}


def patterned(module: nn.Module) -> nn.Module:
    """Every parameter set to a distinct pattern (no RNG)."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(pattern(*p.shape, phase=0.4 * i + 0.1, scale=0.7))
    return module


def test_concat_and_sum_match_ogm_ge_code():
    f = feats()
    ours = patterned(FUSIONS.get("concat")(TWO, C))
    code = ConcatFusion(2 * D, C)
    code.fc_out.load_state_dict(ours.head.state_dict())
    torch.testing.assert_close(ours(f)[0], code(f["audio"], f["visual"])[2])
    ours = patterned(FUSIONS.get("sum")(TWO, C))
    code = SumFusion(D, C)
    code.fc_x.load_state_dict(ours.heads["audio"].state_dict())
    code.fc_y.load_state_dict(ours.heads["visual"].state_dict())
    torch.testing.assert_close(ours(f)[0], code(f["audio"], f["visual"])[2])


def test_film_matches_ogm_ge_code_both_directions():
    f = feats()
    for x_film in (True, False):
        ours = patterned(FUSIONS.get("film")(TWO, C, x_film=x_film))
        code = FiLM(D, D, C, x_film=x_film)
        code.fc.load_state_dict(ours.film.state_dict())
        code.fc_out.load_state_dict(ours.head.state_dict())
        torch.testing.assert_close(ours(f)[0], code(f["audio"], f["visual"])[2])


def test_gated_matches_ogm_ge_code_both_directions():
    f = feats()
    for x_gate in (True, False):
        ours = patterned(FUSIONS.get("gated")(TWO, C, x_gate=x_gate))
        code = GatedFusion(D, D, C, x_gate=x_gate)
        code.fc_x.load_state_dict(ours.proj["audio"].state_dict())
        code.fc_y.load_state_dict(ours.proj["visual"].state_dict())
        code.fc_out.load_state_dict(ours.head.state_dict())
        torch.testing.assert_close(ours(f)[0], code(f["audio"], f["visual"])[2])


def test_weight_iprm_code_form_matches_cmml3():
    """Fused logits equal; the unimodal logits differ by design (ours: the modality's share
    W·(α_m ⊙ φ_m) + b/3, summing to the fused logits; the code: W·φ_m + b)."""
    mods = ("text", "audio", "vision")
    f = feats(mods)
    ours = patterned(FUSIONS.get("weight")({m: D for m in mods}, C, form="iprm_code"))
    code = CMML3(D, C)
    code.fc_out.load_state_dict(ours.head.state_dict())
    out_x, out_y, out_z, fused = code(*(f[m] for m in mods))
    got, shares = ours(f)
    torch.testing.assert_close(got, fused)
    torch.testing.assert_close(ours.head(f["text"]), out_x)  # the code's unimodal score, for comparison
    torch.testing.assert_close(sum(shares.values()), fused)


def test_mmtm_matches_the_authors_module():
    """Audio maps [B, C_a, H, W] (one frame) and video as T = 2 frame rows [B·T, C_v, H, W],
    which the authors' module takes as [B, C_v, T, H, W]."""
    ours = patterned(OurMMTM({"audio": 3, "visual": 5}, ratio=4))
    code = MMTM(3, 5, 4)
    code.fc_squeeze.load_state_dict(ours.squeeze.state_dict())
    code.fc_visual.load_state_dict(ours.excite["audio"].state_dict())
    code.fc_skeleton.load_state_dict(ours.excite["visual"].state_dict())
    audio = pattern(2, 3, 4, 5, phase=0.2)
    video = pattern(2, 5, 2, 3, 3, phase=1.1)  # [B, C, T, H, W]
    rows = video.permute(0, 2, 1, 3, 4).reshape(4, 5, 3, 3)  # [B·T, C, H, W], clip-major
    out = ours({"audio": audio, "visual": rows}, {"audio": 1, "visual": 2})
    a, v = code(audio, video)
    torch.testing.assert_close(out["audio"], a)
    torch.testing.assert_close(out["visual"], v.permute(0, 2, 1, 3, 4).reshape(4, 5, 3, 3))
