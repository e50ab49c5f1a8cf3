"""Leaderboard statistics: McNemar pooled over seeds, Holm, bootstrap intervals, significance
ranks and the minimum detectable difference, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from mmbalance.evaluate.predictions import Predictions, load_predictions, save_predictions
from mmbalance.report.stats import (
    BETTER,
    NO_DIFF,
    WORSE,
    Comparison,
    Resampler,
    RunCorrectness,
    StatsConfig,
    correctness,
    dataset_stats,
    holm,
    mcnemar_pooled,
    minimum_detectable_difference,
    protocol_text,
)

CFG = StatsConfig(bootstrap=500, seed=0)


def _run(name, correct, unimodal=False):
    correct = np.asarray(correct, dtype=bool)
    keys = np.array([f"clip{i:04d}" for i in range(correct.shape[1])])
    return RunCorrectness(name, list(range(correct.shape[0])), keys, correct, unimodal)


def test_mcnemar_pooled_over_seeds_exact():
    # seed 0: A right/B wrong on clips 0, 1; seed 1: on clip 2 → b = 3, c = 0, exact p = 2 · 0.5³
    a = np.array([[1, 1, 0, 1], [0, 0, 1, 1]], dtype=bool)
    b = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], dtype=bool)
    n01, n10, p = mcnemar_pooled(a, b)
    assert (n01, n10) == (3, 0)
    assert p == pytest.approx(0.25)


def test_mcnemar_no_discordant_pairs():
    a = np.ones((2, 5), dtype=bool)
    assert mcnemar_pooled(a, a) == (0, 0, 1.0)


def test_mcnemar_chi2_form_above_25_discordant():
    # b = 30, c = 10: continuity-corrected χ² = (|30 − 10| − 1)² / 40 = 9.025 → p = 0.002663
    a = np.zeros((1, 100), dtype=bool)
    b = np.zeros((1, 100), dtype=bool)
    a[0, :30] = True
    b[0, 30:40] = True
    n01, n10, p = mcnemar_pooled(a, b)
    assert (n01, n10) == (30, 10)
    assert p == pytest.approx(0.0026631, rel=1e-4)


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_minimum_detectable_difference_hand_computed():
    # (z_0.975 + z_0.8) · sqrt(0.1 / 900) = (1.959964 + 0.841621) · 0.0105409
    assert minimum_detectable_difference(0.1, 900, 0.05, 0.8) == pytest.approx(0.029531, rel=1e-4)
    # Holm over m comparisons: the first step tests at α / m
    assert minimum_detectable_difference(0.1, 900, 0.05, 0.8, m=10) > 0.0295


def test_bootstrap_interval_matches_the_binomial_width_and_degenerates():
    rng = np.random.default_rng(0)
    one = rng.random((1, 400)) < 0.8
    cfg = StatsConfig(bootstrap=4000, seed=0)
    lo, hi = Resampler(1, 400, cfg, "x").interval(one)
    assert lo < one.mean() < hi
    # one seed: the clip bootstrap ≈ the binomial interval, 2 · 1.96 · sqrt(p(1 − p) / 400)
    p = one.mean()
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 400), rel=0.15)
    # three seeds that agree on every clip: no seed variance, the same width
    lo3, hi3 = Resampler(3, 400, cfg, "x").interval(np.repeat(one, 3, axis=0))
    assert hi3 - lo3 == pytest.approx(hi - lo, rel=0.15)
    assert Resampler(3, 400, cfg, "x").interval(np.ones((3, 400))) == (1.0, 1.0)


def test_bootstrap_draws_are_shared_and_deterministic():
    a, b = Resampler(3, 50, CFG, "cremad"), Resampler(3, 50, CFG, "cremad")
    assert np.array_equal(a.clip_idx, b.clip_idx) and np.array_equal(a.seed_idx, b.seed_idx)
    assert not np.array_equal(a.clip_idx, Resampler(3, 50, CFG, "ave").clip_idx)


def test_verdicts():
    assert Comparison(0.05, 0.01, 0.09, 30, 10, 0.001, 300, 0.004).verdict(0.05) == BETTER
    assert Comparison(-0.05, -0.09, -0.01, 10, 30, 0.001, 300, 0.004).verdict(0.05) == WORSE
    # significant before, not after the correction
    assert Comparison(0.02, -0.01, 0.05, 16, 8, 0.03, 300, 0.09).verdict(0.05) == NO_DIFF


def test_dataset_stats_ranks_tie_non_significant_differences():
    n = 300
    full = np.ones((3, n), dtype=bool)
    almost = full.copy()
    almost[:, :1] = False  # 3 discordant pairs of 900 (exact p = 0.25): not significant
    half = full.copy()
    half[:, ::2] = False  # 450 discordant pairs: significant
    uni = full.copy()
    uni[:, 1::3] = False
    runs = {"concat": _run("concat", almost), "arl": _run("arl", full), "bad": _run("bad", half),
            "audio_only": _run("audio_only", uni, unimodal=True)}
    st = dataset_stats(runs, CFG, dataset="toy")
    assert st.reference == "concat" and st.best_unimodal == "audio_only"
    assert st.rows["arl"].rank == 1 and st.rows["concat"].rank == 1  # tie: not significant
    assert st.rows["audio_only"].rank == 3 and st.rows["bad"].rank == 4
    assert st.rows["arl"].vs_concat.verdict(CFG.alpha) == NO_DIFF
    assert st.rows["bad"].vs_concat.verdict(CFG.alpha) == WORSE
    assert st.rows["arl"].vs_unimodal.verdict(CFG.alpha) == BETTER
    assert st.rows["concat"].vs_concat is None and st.rows["audio_only"].vs_unimodal is None
    # every run against concat and against the best unimodal run, minus the two self-comparisons
    assert st.n_comparisons == 2 * 4 - 2
    assert st.rows["arl"].vs_concat.diff == pytest.approx(3 / 900)
    assert st.n_clips == n and st.n_seeds == 3 and st.mdd is not None
    text = protocol_text(st, CFG)
    assert "Holm" in text and "McNemar" in text and "300 test clips × 3 seeds" in text


def test_runs_on_other_clips_are_left_out_with_a_reason():
    a = _run("concat", np.ones((2, 10)))
    b = _run("arl", np.ones((2, 12)))
    st = dataset_stats({"concat": a, "arl": b}, CFG)
    assert "arl" in st.skipped and "arl" not in st.rows


def _preds(keys, labels, logits):
    return Predictions(np.array(keys), np.array(labels), np.array(logits, dtype=np.float32),
                       {"audio": np.array(logits, dtype=np.float16), "visual": np.array(logits, dtype=np.float16)})


def test_predictions_roundtrip_and_fixed_bytes(tmp_path):
    p = _preds(["a", "b", "c"], [0, 1, 1], [[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    save_predictions(tmp_path / "one" / "seed0.npz", p)
    save_predictions(tmp_path / "two" / "seed0.npz", p)
    assert (tmp_path / "one/seed0.npz").read_bytes() == (tmp_path / "two/seed0.npz").read_bytes()
    back = load_predictions(tmp_path / "one" / "seed0.npz")
    assert list(back.keys) == ["a", "b", "c"] and back.correct().tolist() == [True, True, False]
    assert set(back.probes) == {"audio", "visual"}


def test_seeds_on_different_clips_is_an_error_naming_the_file():
    p0 = _preds(["a", "b"], [0, 1], [[1, 0], [0, 1]])
    p1 = _preds(["a", "c"], [0, 1], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="seed1.npz: test clips differ"):
        correctness("concat", {0: p0, 1: p1}, {1: "x/seed1.npz"})


def test_segment_rows_are_resampled_by_clip():
    """Event localisation: rows ``<clip>/<k>`` are averaged per clip before the bootstrap, so a
    clip whose segments fail together widens the interval as one unit, not ten."""
    from mmbalance.evaluate.predictions import segments_per_clip
    from mmbalance.report.stats import clip_units

    keys = np.array([f"c{i}/{k:02d}" for i in range(3) for k in range(2)])
    values = np.array([[1, 1, 0, 1, 0, 0]], dtype=float)
    seg = RunCorrectness("r", [0], keys, values.astype(bool), False)
    assert seg.segments == segments_per_clip(keys) == 2
    units, sizes = clip_units(values, seg.units)
    assert units.tolist() == [[1.0, 0.5, 0.0]] and sizes is None
    plain = RunCorrectness("r", [0], np.array([f"clip{i}" for i in range(6)]), values.astype(bool), False)
    assert plain.units is None and clip_units(values, plain.units)[0].shape == (1, 6)  # plain clips
    # whole clips right or wrong: the clip-level interval is wider than a segment-level one
    n, s = 60, 10
    correct = np.repeat(np.arange(n) % 2 == 0, s)[None].repeat(3, axis=0)  # [3, n·s]
    seg = RunCorrectness("concat__avga", [0, 1, 2], np.array([f"v{i:03d}/{k:02d}" for i in range(n) for k in range(s)]), correct, False)
    flat = RunCorrectness("concat__avga", [0, 1, 2], np.array([f"v{i:04d}" for i in range(n * s)]), correct, False)
    by_clip = dataset_stats({"concat__avga": seg}, CFG, dataset="toy")
    by_row = dataset_stats({"concat__avga": flat}, CFG, dataset="toy")
    width = lambda st: st.rows["concat__avga"].hi - st.rows["concat__avga"].lo
    assert by_clip.rows["concat__avga"].acc == pytest.approx(0.5) and width(by_clip) > 2.5 * width(by_row)
    assert by_clip.segments == s and by_row.segments == 0 and by_clip.reference == "concat__avga"
    assert "clustered pairs" in protocol_text(by_clip, CFG) and "segments" not in protocol_text(by_row, CFG)


def test_clustered_mcnemar_hand_computed():
    """Durkalski's statistic: clusters (2 seeds x 2 clips of 3 segments) with discordant balances
    d = [2, 1, 0, -1] give X² = (Σd)² / Σd² = 4 / 6."""
    from scipy.stats import chi2

    from mmbalance.report.stats import clustered_mcnemar

    a = np.array([[1, 1, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=bool)
    b = np.array([[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=bool)
    units = np.arange(6) // 3
    n01, n10, p = clustered_mcnemar(a, b, units)
    assert (n01, n10) == (3, 1) and p == pytest.approx(chi2.sf(4 / 6, 1))
    assert clustered_mcnemar(a, a, units) == (0, 0, 1.0)
    # clusters of unequal size: {0, 1, 2, 3} and {4, 5} give d = [3, 0, -1, 0]: X² = 2² / 10
    assert clustered_mcnemar(a, b, np.array([0, 0, 0, 0, 1, 1]))[2] == pytest.approx(chi2.sf(4 / 10, 1))


def test_segment_comparisons_use_the_clustered_test():
    """Ten segments of a clip flipping together are one piece of evidence, not ten: the clustered
    p-value is far larger than the segment-level McNemar's."""
    from mmbalance.report.stats import compare

    n, s = 40, 10
    better = np.repeat(np.arange(n) < 12, s)  # A right on 12 whole clips more
    base = np.zeros(n * s, dtype=bool)
    keys = np.array([f"v{i:03d}/{k:02d}" for i in range(n) for k in range(s)])
    a = RunCorrectness("a", [0], keys, (base | better)[None], False)
    b = RunCorrectness("b", [0], keys, base[None], False)
    b.correct[0, ::7] = True  # some noise on B's side
    clustered = compare(a, b, CFG)
    flat_keys = np.array([f"v{i:04d}" for i in range(n * s)])
    flat = compare(RunCorrectness("a", [0], flat_keys, a.correct, False), RunCorrectness("b", [0], flat_keys, b.correct, False), CFG)
    assert clustered.diff == pytest.approx(flat.diff) and clustered.p > 100 * flat.p


def test_rows_clustered_by_a_params_pattern():
    """MUSIC-AVQA: questions ``<video>_<id>`` of one video are one cluster. Clusters of unequal
    size give the ratio estimate (rows right / rows drawn); a video whose questions fail together
    widens the interval; a key the pattern does not match is an error naming the params key."""
    from mmbalance.report.stats import Resampler, clip_units, with_clusters

    keys = np.array(["v1_1", "v1_2", "v1_3", "v2_7", "v3_8", "v3_9"])
    r = with_clusters(RunCorrectness("concat", [0], keys, np.array([[1, 1, 0, 0, 1, 1]], bool), False), r"^(?P<video>.+)_\d+$", "avqa")
    assert r.groups.tolist() == [0, 0, 0, 1, 2, 2] and r.unit == "video"
    sums, sizes = clip_units(r.correct.astype(float), r.units)
    assert sums.tolist() == [[2.0, 0.0, 2.0]] and sizes.tolist() == [3.0, 1.0, 2.0]
    rs = Resampler(1, 3, CFG)
    rs.clip_idx, rs.seed_idx = np.array([[0, 0, 1], [2, 2, 2]]), np.zeros((2, 1), int)
    assert rs.replicates(sums, sizes).tolist() == [4 / 7, 1.0]  # (2+2+0)/(3+3+1), 6/6
    with pytest.raises(ValueError, match="stats.clusters.avqa: test key 'odd' of run concat"):
        with_clusters(RunCorrectness("concat", [0], np.array(["odd"]), np.ones((1, 1), bool), False), r"^(?P<video>.+)_\d+$", "avqa")
    with pytest.raises(ValueError, match="exactly one named group"):
        StatsConfig(clusters={"avqa": r"^(.+)_\d+$"})
    # 40 videos of 1-9 questions each, right or wrong as a whole: the video-level interval is wider
    sizes_v = [1 + i % 9 for i in range(40)]
    keys = np.array([f"{i:04d}_{q}" for i in range(40) for q in range(sizes_v[i])])
    correct = np.concatenate([np.full(n, i % 2 == 0) for i, n in enumerate(sizes_v)])[None].repeat(3, axis=0)
    runs = {"concat": RunCorrectness("concat", [0, 1, 2], keys, correct, False)}
    clustered = dataset_stats(runs, StatsConfig(bootstrap=500, clusters={"toy": r"^(?P<video>\d+)_\d+$"}), dataset="toy")
    flat = dataset_stats(runs, CFG, dataset="toy")
    width = lambda st: st.rows["concat"].hi - st.rows["concat"].lo
    assert clustered.rows["concat"].acc == flat.rows["concat"].acc and width(clustered) > 2 * width(flat)
    assert clustered.n_units == 40 and clustered.unit == "video"
    assert "40 videos" in protocol_text(clustered, CFG) and "Clustered rows" not in protocol_text(flat, CFG)
