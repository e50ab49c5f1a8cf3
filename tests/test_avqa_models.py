"""Audio-visual question answering models (AVSD, Pano-AVQA; OPM/OGM Table 7 on MUSIC-AVQA):
registration, token shapes, gradients to every parameter, per-modality logits for all three
modalities, hand-computed heads, the question's per-word tokens, and OPM / OGM steps on them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import METHODS, MethodContext, build_method
from mmbalance.models import BACKBONES, FUSIONS, SequenceBatch, build_model
from mmbalance.models.avqa import audio_tokens, question_tokens
from mmbalance.train.data import SplitData

from test_methods import PARAMS, TRAIN, assert_finite_gradients, train_step

NAMES = ["avsd", "panoavqa"]
MODS = ["audio", "visual", "question"]
T, L, D, C = 3, 5, 6, 7  # seconds, question words, word-feature size, answers
CFG = {
    "encoders": {"audio": {"name": "tiny_cnn", "channels": [4, 8], "input_size": [16, 24]},  # maps [8, 4, 6]
                 "visual": {"name": "tiny_cnn", "channels": [4, 8]},
                 "question": {"name": "lstm", "hidden": 8}},
    "backbone_options": {"avsd": {"steps": T}, "panoavqa": {"steps": T, "question_words": 4}},
    "fusion_options": {"avsd": {"attention": 5, "hidden": 9}, "panoavqa": {"d_model": 8, "layers": 1, "heads": 2,
                                                                          "ff_dim": 16}},
}
IN_CHANNELS = {"audio": 1, "visual": 3, "question": D}
KINDS = {"audio": "spectrogram", "visual": "frames", "question": "sequence"}


def model_for(name: str, mods=MODS, seed: int = 0, **cfg):
    torch.manual_seed(seed)
    return build_model({**CFG, "backbone": name, "fusion": name, **cfg}, list(mods), IN_CHANNELS, C, name, KINDS)


def inputs(batch: int = 4, seed: int = 0) -> dict:
    """A batch as the loader gives it: spectrogram [B, 1, 16, 24], T frames, padded questions
    of lengths 5, 3, 1, 4 (padding steps hold garbage the encoders must ignore)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 3, 1, 4])[:batch]
    mask = torch.arange(L)[None, :] < lengths[:, None]
    return {"audio": torch.randn(batch, 1, 16, 24, generator=gen),
            "visual": torch.randn(batch, T, 3, 16, 16, generator=gen),
            "question": SequenceBatch(torch.randn(batch, L, D, generator=gen), mask)}


def test_registered_as_backbone_and_head_pairs():
    for name in NAMES:
        factory = BACKBONES.get(name)
        assert factory.fusion == name and name in FUSIONS.names()
        assert not factory.intermediate and not factory.segmented  # modalities meet in the head; one row per question
    with pytest.raises(ValueError, match="backbone 'avsd' feeds the 'avsd' fusion head"):
        build_model({**CFG, "backbone": "avsd"}, MODS, IN_CHANNELS, C, "concat", KINDS)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_every_parameter_learns(name):
    model = model_for(name)
    out = model(inputs())
    words = 4 if name == "panoavqa" else 1  # per-word question tokens, or the LSTM's last state
    assert model.feature_dims == {"audio": T * 8, "visual": T * 8, "question": words * 8}
    assert {m: tuple(f.shape) for m, f in out.features.items()} == {m: (4, d) for m, d in model.feature_dims.items()}
    assert out.logits.shape == (4, C)
    # what OPM and OGM read: every modality's logits, [B, C], none equal to the fused ones
    assert set(out.unimodal_logits) == set(MODS)
    for m, z in out.unimodal_logits.items():
        assert z.shape == (4, C) and not torch.allclose(z, out.logits), m
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_a_question_depends_on_its_own_inputs_only(name):
    model = model_for(name).eval()
    x = inputs()
    with torch.no_grad():
        together = model(x)
        alone = model({"audio": x["audio"][1:2], "visual": x["visual"][1:2],
                       "question": SequenceBatch(x["question"].x[1:2, :3], x["question"].mask[1:2, :3])})
    torch.testing.assert_close(together.logits[1:2], alone.logits, rtol=1e-4, atol=1e-5)
    for m in MODS:
        torch.testing.assert_close(together.unimodal_logits[m][1:2], alone.unimodal_logits[m], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mods", [["audio"], ["visual", "question"]])
def test_fewer_modalities_build(name, mods):
    model = model_for(name, mods=mods)
    out = model({m: v for m, v in inputs().items() if m in mods})
    assert out.logits.shape == (4, C) and set(out.unimodal_logits) == set(mods)
    if len(mods) == 1:
        torch.testing.assert_close(out.unimodal_logits[mods[0]], out.logits)


def test_other_modalities_and_encoders_are_refused():
    with pytest.raises(ValueError, match="backbone 'avsd' answers questions about audio-visual scenes .* got flow"):
        build_model({**CFG, "backbone": "avsd", "encoders": {"flow": CFG["encoders"]["visual"]}}, ["flow"], {"flow": 2}, C,
                    "avsd")
    vatt = {"name": "vatt", "patch_size": [4, 4], "dim": 8, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "input_size": [16, 24]}
    with pytest.raises(ValueError, match="audio encoder must be convolutional.*modality 'audio' has VATTEncoder"):
        build_model({**CFG, "backbone": "avsd", "encoders": {**CFG["encoders"], "audio": vatt}}, MODS, IN_CHANNELS, C, "avsd")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        model_for("avsd", backbone_options={"avsd": {"steps": 0}})
    with pytest.raises(ValueError, match="fusion 'panoavqa': modality 'audio' has 7 features, not 2 tokens"):
        FUSIONS.get("panoavqa")({"audio": 7}, C, tokens={"audio": 2})


def test_audio_tokens_are_the_maps_frequency_means_per_second():
    model = model_for("avsd")
    enc, x = model.encoders["audio"], inputs()["audio"]
    stages = enc.stages
    maps = stages.blocks[1](stages.blocks[0](stages.entry(x)))  # [4, 8, 4, 6]: 6 columns, 2 per second
    want = maps.mean(dim=2).view(4, 8, T, 2).mean(dim=-1).transpose(1, 2)  # [4, T, 8]
    torch.testing.assert_close(audio_tokens(enc, x, T, "test"), want)


@pytest.mark.parametrize("encoder", [{"name": "lstm", "hidden": 8},
                                     {"name": "transformer", "d_model": 8, "layers": 1, "heads": 2, "ff_dim": 8,
                                      "dropout": 0.0}])
def test_question_tokens_are_the_words_own_outputs(encoder):
    model = model_for("panoavqa", encoders={**CFG["encoders"], "question": encoder}).eval()
    enc, q = model.encoders["question"], inputs()["question"]
    with torch.no_grad():
        got = question_tokens(enc, q, 4, "test")  # [4, 4, 8]: the 5-word question is cut to 4
        assert got.shape == (4, 4, 8)
        for b, n in enumerate([5, 3, 1, 4]):
            alone = question_tokens(enc, q.x[b : b + 1, :n], n, "test")[0]  # the question without padding
            torch.testing.assert_close(got[b, : min(n, 4)], alone[:4], rtol=1e-5, atol=1e-6)
            assert (got[b, n:] == 0).all()  # padding words are exactly zero: absent tokens
        padded = question_tokens(enc, q, 7, "test")
        assert padded.shape == (4, 7, 8) and (padded[:, 5:] == 0).all()
    with pytest.raises(ValueError, match="question tokens come from a 'transformer' or 'lstm' sequence encoder"):
        question_tokens(model.encoders["visual"], q, 4, "test")


def test_avsd_head_by_hand():
    """Two seconds of audio (2-d tokens), one visual token, a 2-d question: the audio attention
    e_t = wᵀ tanh(W a_t + b + U q), α = softmax(e), then the MLP on [Σ α_t a_t; v; q]."""
    torch.manual_seed(0)
    head = FUSIONS.get("avsd")({"audio": 4, "visual": 3, "question": 2}, 2, tokens={"audio": 2, "visual": 1, "question": 1},
                               attention=3, hidden=5)
    assert set(head.attention) == {"audio"}  # one visual token: nothing to attend over
    a = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, -1.0, 2.0]])
    q = torch.tensor([[1.0, -1.0]])
    att = head.attention["audio"]
    tokens = a.view(1, 2, 2)
    e = torch.stack([att.w(torch.tanh(att.x(tokens[0, t]) + att.q(q[0]))) for t in range(2)]).view(1, 2)
    alpha = torch.exp(e) / torch.exp(e).sum()
    pooled = alpha[0, 0] * tokens[0, 0] + alpha[0, 1] * tokens[0, 1]
    first, last = head.mlp[0], head.mlp[3]
    want = last(torch.relu(first(torch.cat([pooled, v[0], q[0]]))))
    fused, uni = head({"audio": a, "visual": v, "question": q})
    torch.testing.assert_close(fused[0], want)
    # a non-linear head: each modality's logits are the prediction with the others zeroed
    torch.testing.assert_close(uni["visual"], head.fuse({"audio": torch.zeros(1, 4), "visual": v, "question": torch.zeros(1, 2)}))


def test_panoavqa_sequence_by_hand_and_zeroed_tokens_are_absent():
    torch.manual_seed(0)
    head = FUSIONS.get("panoavqa")({"audio": 4, "question": 6}, 3, tokens={"audio": 2, "question": 3},
                                   d_model=4, layers=1, heads=2, ff_dim=8).eval()
    a = torch.randn(2, 4)
    q = torch.randn(2, 6)
    q[1, 4:] = 0.0  # the second question has two words: its last token is padding
    seq, mask = head.sequence({"audio": a, "question": q})
    assert seq.shape == (2, 1 + 2 + 3, 4)
    assert mask.tolist() == [[False] * 6, [False] * 5 + [True]]
    types, pos = head.types.weight, head.positions.weight
    torch.testing.assert_close(seq[0, 2], head.proj["audio"](a[0, 2:]) + types[0] + pos[1])
    torch.testing.assert_close(seq[1, 4], head.proj["question"](q[1, 2:4]) + types[1] + pos[1])
    torch.testing.assert_close(seq[:, 0], head.cls[0].expand(2, -1))
    # the CLS output does not depend on masked tokens: dropping them from the sequence changes nothing
    with torch.no_grad():
        fused, uni = head({"audio": a, "question": q})
        short = head.encoder(seq[1:2, :5])  # no padding mask needed: the padded word is gone
        torch.testing.assert_close(fused[1], head.head(torch.tanh(head.pooler(short[0, 0]))), rtol=1e-5, atol=1e-6)
        # the question's own logits: the audio tokens zeroed, so absent, leaving CLS and the question words
        only_q = head.encoder(torch.cat([seq[:1, :1], seq[:1, 3:]], dim=1))
        torch.testing.assert_close(uni["question"][0], head.head(torch.tanh(head.pooler(only_q[0, 0]))),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_heads_work_on_one_vector_per_modality(name):
    """Without ``tokens`` (another backbone's features) every modality is one token."""
    head = FUSIONS.get(name)({"audio": 8, "visual": 5, "question": 3}, C)
    feats = {m: torch.randn(4, d, requires_grad=True) for m, d in {"audio": 8, "visual": 5, "question": 3}.items()}
    fused, uni = head(feats)
    assert fused.shape == (4, C) and set(uni) == set(feats)


def _split(n: int, seed: int) -> SplitData:
    """``n`` questions: spectrograms [n, 1, 16, 24], T frames, word features of 1-5 steps."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (n,), generator=gen)
    words = torch.randn(n, L, D, generator=gen) * (torch.arange(L)[None, :, None] < lengths[:, None, None])
    arrays = {"audio": torch.randn(n, 1, 16, 24, generator=gen),
              "visual": torch.randint(0, 255, (n, T, 16, 16, 3), generator=gen, dtype=torch.uint8), "question": words}
    info = {"frames_per_clip": T, "modalities": {"audio": {"kind": "spectrogram", "shape": [16, 24]},
                                                  "visual": {"kind": "frames", "shape": [None, 16, 16, 3]},
                                                  "question": {"kind": "sequence", "shape": [None, D]}}}
    return SplitData([f"q{i:03d}" for i in range(n)], torch.arange(n) % C, arrays,
                     {"visual": torch.full((n,), T), "question": lengths}, info)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["concat", "opm", "ogm", "opm_ogm"])
def test_table7_methods_step_on_three_modalities(name, method):
    """One training step of each Table 7 row (w/o, +OPM, +OGM, +OPM+OGM): finite loss, every
    parameter a finite gradient, OPM's drop probabilities and OGM's coefficients for all three."""
    assert method in METHODS.names()
    ctx = MethodContext(modalities=MODS, num_classes=C, epochs=TRAIN["epochs"])
    m = build_method(method, PARAMS["methods"][method], ctx)
    model = model_for(name)
    model.method_modules.update(m.modules(model.feature_dims, C))
    splits = {s: _split(12, seed) for s, seed in (("train", 0), ("val", 1), ("test", 2))}
    _, out, _ = train_step(method, m, model, splits)
    assert set(out.unimodal_logits) == set(MODS)
    assert_finite_gradients(model, f"{method} on {name}")
