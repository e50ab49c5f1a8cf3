"""Leaderboard statistics from saved per-sample predictions.

Every figure here is computed from the ``predictions/seed<k>.npz`` files of the training stages
(one row per test clip, sorted by clip id), never from the summary accuracies, so any two runs
on the same test split can be compared clip by clip.

Protocol (stated under every leaderboard by :func:`protocol_text`):

- **Interval of a run's accuracy**: a two-level percentile bootstrap. Each replicate draws the
  seeds with replacement, then the test clips with replacement (the same clips for every seed:
  a clip is the unit that is sampled), and takes the mean accuracy over the drawn seeds × clips.
  It therefore covers both the test-set sampling and the seed-to-seed variation. On an
  event-localisation split (rows ``<clip>/<segment>``) the unit drawn is the clip, with all of
  its segments (``clip_units``), and the paired test is McNemar's for clustered pairs
  (``clustered_mcnemar``). Other datasets whose test rows share a source (MUSIC-AVQA: the
  questions of one video) name the source in params ``stats.clusters.<dataset>``, a pattern whose
  one named group is the cluster of a row's key; the bootstrap then draws whole clusters
  (accuracy = rows right / rows over the drawn clusters) and the tests are the clustered ones.
- **Paired test of two runs**: McNemar's test on the clips, combined over seeds by pooling the
  discordant pairs of each seed's stratum (seed k of run A against seed k of run B): ``b`` =
  clips A gets right and B wrong, ``c`` = the reverse, summed over seeds; exact binomial form
  when b + c < 25, else the continuity-corrected χ² (statsmodels ``mcnemar``). The interval of
  the difference is the same two-level bootstrap applied to the paired difference.
- **Multiple comparisons**: Holm's step-down correction (statsmodels ``multipletests``) over
  all comparisons of one dataset's table (every run against Concat and against the best
  unimodal run); ranks use a second Holm family over all pairs of runs.
- **Rank**: 1 + the number of runs that are significantly more accurate (Holm-corrected paired
  test). Runs whose differences are not significant share a rank.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.stats import chi2, norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from mmbalance.evaluate.predictions import Predictions, load_predictions, reference_run, seed_files, segments_per_clip

BETTER, WORSE, NO_DIFF, REFERENCE = "better", "worse", "no sig. diff.", "reference"
EXACT_BELOW = 25  # discordant pairs below which McNemar's exact binomial form is used


@dataclass(frozen=True)
class StatsConfig:
    """``stats`` params: bootstrap replicates, interval level, test level, power for the
    minimum detectable difference, the resampling seed, and per dataset the pattern that names
    the cluster of a test row (``clusters``, e.g. ``{music_avqa: '^(?P<video>.+)_[0-9]+$'}``)."""

    bootstrap: int = 2000
    level: float = 0.95
    alpha: float = 0.05
    power: float = 0.8
    seed: int = 0
    clusters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dataset, pattern in self.clusters.items():
            try:
                names = list(re.compile(pattern).groupindex)
            except re.error as e:
                raise ValueError(f"params stats.clusters.{dataset}: {pattern!r} is not a regular expression ({e})") from None
            if len(names) != 1:
                raise ValueError(f"params stats.clusters.{dataset}: {pattern!r} needs exactly one named group, "
                                 f"e.g. (?P<video>...), naming the cluster; it has {names or 'none'}")

    @classmethod
    def from_params(cls, block: Mapping | None) -> "StatsConfig":
        """From the params ``stats`` block (missing keys keep their defaults)."""
        block = dict(block or {})
        unknown = set(block) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"params stats: unknown keys {sorted(unknown)}; choices: {sorted(cls.__dataclass_fields__)}")
        return cls(**block)


@dataclass
class RunCorrectness:
    """One run's correctness on a shared test split: [S, N] bool, rows = ``seeds``, columns =
    ``keys`` (sorted clip ids); ``unimodal`` when the model has a single modality; ``groups``
    [N] the cluster index of each row when the rows are not independent (``with_clusters``)."""

    run: str
    seeds: list[int]
    keys: np.ndarray
    correct: np.ndarray
    unimodal: bool
    groups: np.ndarray | None = None
    unit: str = ""  # what a cluster of ``groups`` is, e.g. "video"

    @property
    def accuracy(self) -> float:
        """Mean accuracy over seeds and clips (a fraction)."""
        return float(self.correct.mean())

    @cached_property
    def segments(self) -> int:
        """Rows per clip when the rows are an event-localisation split's segments, else 0
        (read once from the keys: every comparison of the run needs it)."""
        return segments_per_clip(self.keys)

    @property
    def units(self) -> np.ndarray | None:
        """[N] resampling unit of each row: its cluster, its clip on an event-localisation split
        (``segments`` rows each), or None when every row is its own unit."""
        if self.groups is not None:
            return self.groups
        return np.arange(len(self.keys)) // self.segments if self.segments else None


def with_clusters(r: RunCorrectness, pattern: str | None, dataset: str = "") -> RunCorrectness:
    """``r`` with each row's cluster: the named group of ``pattern`` matched on its key
    (params ``stats.clusters.<dataset>``); ``r`` itself when there is no pattern."""
    if not pattern:
        return r
    rx = re.compile(pattern)
    unit = next(iter(rx.groupindex))  # the one named group (StatsConfig checks there is one)
    names = []
    for key in r.keys:
        m = rx.match(str(key))
        if m is None:
            raise ValueError(f"params stats.clusters.{dataset}: test key {str(key)!r} of run {r.run} does not match {pattern!r}")
        names.append(m.group(unit))
    _, groups = np.unique(np.array(names), return_inverse=True)
    return replace(r, groups=groups.astype(np.int64), unit=unit)


def load_run(run: str, folder: Path) -> RunCorrectness | None:
    """A run's correctness from ``folder/predictions/seed<k>.npz``; None when it has no files.

    Raises ValueError naming the file when the seeds of one run disagree on the test clips."""
    files = seed_files(Path(folder) / "predictions")
    if not files:
        return None
    preds = {s: load_predictions(p) for s, p in files.items()}
    return correctness(run, preds, {s: str(p) for s, p in files.items()})


def correctness(run: str, preds: Mapping[int, Predictions], sources: Mapping[int, str] | None = None) -> RunCorrectness:
    """Stack the per-seed predictions of one run into a [S, N] correctness matrix."""
    seeds = sorted(preds)
    keys = preds[seeds[0]].keys
    for s in seeds[1:]:
        if not np.array_equal(preds[s].keys, keys):
            where = (sources or {}).get(s, f"seed {s}")
            raise ValueError(f"{where}: test clips differ from seed {seeds[0]}'s of run {run}")
    unimodal = len(preds[seeds[0]].probes) == 1
    return RunCorrectness(run, seeds, keys, np.stack([preds[s].correct() for s in seeds]), unimodal)


def _stable_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


@dataclass
class Resampler:
    """Bootstrap draws shared by every run of one dataset (common random numbers: intervals of
    different runs use the same resampled clips and seeds)."""

    n_seeds: int
    n_clips: int
    cfg: StatsConfig
    dataset: str = ""
    seed_idx: np.ndarray = field(init=False)  # [B, S]
    clip_idx: np.ndarray = field(init=False)  # [B, N]

    def __post_init__(self) -> None:
        rng = np.random.default_rng(_stable_seed(self.cfg.seed, self.dataset, self.n_seeds, self.n_clips))
        self.seed_idx = rng.integers(0, self.n_seeds, size=(self.cfg.bootstrap, self.n_seeds))
        self.clip_idx = rng.integers(0, self.n_clips, size=(self.cfg.bootstrap, self.n_clips))

    def replicates(self, values: np.ndarray, sizes: np.ndarray | None = None) -> np.ndarray:
        """[B] means of ``values`` [S, N] (0/1 or paired differences) over drawn seeds × clips.

        With ``sizes`` [N] (clusters of unequal size: ``values`` are per-cluster sums) a seed's
        figure is Σ drawn sums / Σ drawn sizes, the accuracy over the rows of the drawn clusters."""
        # per replicate: mean over drawn seeds of the mean over drawn clips → [B]
        if sizes is None:
            per_seed = np.stack([values[s][self.clip_idx].mean(axis=1) for s in range(self.n_seeds)], axis=1)  # [B, S]
        else:
            drawn = sizes[self.clip_idx].sum(axis=1)  # [B] rows in each replicate's clusters
            per_seed = np.stack([values[s][self.clip_idx].sum(axis=1) / drawn for s in range(self.n_seeds)], axis=1)
        return np.take_along_axis(per_seed, self.seed_idx, axis=1).mean(axis=1)

    def interval(self, values: np.ndarray, sizes: np.ndarray | None = None) -> tuple[float, float]:
        """Percentile interval at ``cfg.level`` of the mean of ``values`` [S, N] (see ``replicates``)."""
        tail = (1.0 - self.cfg.level) / 2.0
        lo, hi = np.quantile(self.replicates(values.astype(np.float64), sizes), [tail, 1.0 - tail])
        return float(lo), float(hi)


@dataclass
class Comparison:
    """Run A against run B on the seeds both have: accuracy difference A − B (fraction), its
    bootstrap interval, the pooled discordant counts and McNemar's p-value (raw and Holm)."""

    diff: float
    lo: float
    hi: float
    b: int
    c: int
    p: float
    n_pairs: int
    p_holm: float | None = None

    def verdict(self, alpha: float) -> str:
        """better / worse / no sig. diff. for A against B at the corrected level."""
        p = self.p if self.p_holm is None else self.p_holm
        if p >= alpha or self.b == self.c:
            return NO_DIFF
        return BETTER if self.b > self.c else WORSE


def mcnemar_pooled(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """Discordant counts (A right & B wrong, A wrong & B right) pooled over seeds of [S, N]
    correctness matrices, and McNemar's two-sided p-value."""
    n01 = int((a & ~b).sum())
    n10 = int((~a & b).sum())
    both, neither = int((a & b).sum()), int((~a & ~b).sum())
    if n01 + n10 == 0:
        return n01, n10, 1.0
    res = mcnemar([[both, n01], [n10, neither]], exact=n01 + n10 < EXACT_BELOW, correction=True)
    return n01, n10, float(res.pvalue)


def unpaired_reason(a: RunCorrectness, b: RunCorrectness) -> str | None:
    """Why A and B cannot be compared clip by clip ("other test clips", "no seed in common"), or
    None when they can (``align``)."""
    if not np.array_equal(a.keys, b.keys):
        return "other test clips"
    if not set(a.seeds) & set(b.seeds):
        return "no seed in common"
    return None


def align(a: RunCorrectness, b: RunCorrectness) -> tuple[np.ndarray, np.ndarray]:
    """The [S', N] correctness of A and B on the seeds both ran; clips must be the same."""
    why = unpaired_reason(a, b)
    if why is not None:
        raise ValueError(f"runs {a.run} and {b.run} cannot be paired: {why}")
    common = [s for s in a.seeds if s in b.seeds]
    return a.correct[[a.seeds.index(s) for s in common]], b.correct[[b.seeds.index(s) for s in common]]


def clip_units(values: np.ndarray, units: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """[S, N] per-row values → ([S, K] per resampling unit, [K] unit sizes or None).

    ``units`` [N] is each row's unit (``RunCorrectness.units``); None: every row is a unit. Units
    of one size (an event-localisation clip's segments) are averaged, sizes None; units of unequal
    size (the questions of one video) are summed and their sizes returned, for a ratio estimate
    (``Resampler.replicates``). The bootstrap then draws units, not rows that share a source."""
    if units is None:
        return values, None
    k = int(units.max()) + 1
    sizes = np.bincount(units, minlength=k)
    sums = np.stack([np.bincount(units, weights=v, minlength=k) for v in values])  # [S, K]
    if (sizes == sizes[0]).all():
        return sums / sizes[0], None
    return sums, sizes.astype(np.float64)


def clustered_mcnemar(a: np.ndarray, b: np.ndarray, units: np.ndarray) -> tuple[int, int, float]:
    """McNemar's test for clustered pairs (Durkalski et al., Stat. Med. 2003): [S, N] correctness
    whose rows belong to the clusters ``units`` [N] (clusters may differ in size). With d_k =
    b_k − c_k the discordant balance of cluster k (a seed's clip), X² = (Σ d_k)² / Σ d_k² ~ χ²(1);
    rows of one cluster are not taken as independent. Returns the pooled discordant counts and
    the p-value."""
    d = (a & ~b).astype(np.int64) - (~a & b).astype(np.int64)  # [S, N] in {-1, 0, 1}
    k = int(units.max()) + 1
    per = np.concatenate([np.bincount(units, weights=row, minlength=k) for row in d])  # [S · clusters]
    n01, n10 = int((d == 1).sum()), int((d == -1).sum())
    den = float((per ** 2).sum())
    return n01, n10, 1.0 if den == 0 else float(chi2.sf(float(per.sum()) ** 2 / den, 1))


def paired_test(a: RunCorrectness, ca: np.ndarray, cb: np.ndarray) -> tuple[int, int, float]:
    """McNemar's test of aligned [S', N] correctness: clustered when A's rows are clustered."""
    units = a.units
    return clustered_mcnemar(ca, cb, units) if units is not None else mcnemar_pooled(ca, cb)


def compare(a: RunCorrectness, b: RunCorrectness, cfg: StatsConfig, dataset: str = "") -> Comparison:
    """Paired comparison of A against B (difference, bootstrap interval, McNemar p)."""
    ca, cb = align(a, b)
    n01, n10, p = paired_test(a, ca, cb)
    diff, sizes = clip_units(ca.astype(np.float64) - cb.astype(np.float64), a.units)  # [S', units]: {-1, 0, 1}, clip means or sums
    lo, hi = Resampler(diff.shape[0], diff.shape[1], cfg, dataset).interval(diff, sizes)
    mean = float(diff.mean()) if sizes is None else float(diff.sum() / (sizes.sum() * diff.shape[0]))
    return Comparison(mean, lo, hi, n01, n10, p, int(ca.size))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-corrected p-values (statsmodels), in the input order."""
    if not pvalues:
        return []
    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


@dataclass
class RowStats:
    """What the leaderboard shows for one run."""

    acc: float
    lo: float
    hi: float
    n_seeds: int
    vs_concat: Comparison | None = None
    vs_unimodal: Comparison | None = None
    rank: int | None = None


@dataclass
class DatasetStats:
    """Statistics of one dataset's runs: per-run rows, the reference runs' names, the number
    of corrected comparisons, and the minimum detectable difference (percentage points)."""

    rows: dict[str, RowStats]
    reference: str | None
    best_unimodal: str | None
    n_comparisons: int
    n_clips: int
    n_seeds: int
    discordance: float | None
    mdd: float | None
    mdd_holm: float | None
    skipped: dict[str, str] = field(default_factory=dict)
    segments: int = 0  # event localisation: rows are this many segments per clip (0: rows are clips)
    unit: str = ""  # rows clustered by params stats.clusters: what a cluster is ("video")
    n_units: int = 0  # the number of such clusters


def minimum_detectable_difference(discordance: float, n_pairs: int, alpha: float, power: float, m: int = 1) -> float:
    """Smallest accuracy difference (fraction) a two-sided McNemar test at level ``alpha / m``
    detects with probability ``power``, for ``n_pairs`` clip × seed pairs whose share of
    discordant pairs is ``discordance`` (normal approximation: d = (z_{1-α/2m} + z_power) ·
    sqrt(discordance / n_pairs))."""
    z = norm.ppf(1.0 - alpha / (2.0 * m)) + norm.ppf(power)
    return float(z * np.sqrt(discordance / n_pairs))


def dataset_stats(runs: Mapping[str, RunCorrectness], cfg: StatsConfig, reference: str = "concat", dataset: str = "") -> DatasetStats:
    """Intervals, corrected comparisons against ``reference`` and the best unimodal run, and
    significance ranks for the runs of one dataset (runs scored on other clips are skipped and
    listed with the reason)."""
    reference = reference_run(reference, runs)  # AVE localisation: Concat on its first backbone
    pattern = cfg.clusters.get(dataset)
    runs = {n: with_clusters(r, pattern, dataset) for n, r in runs.items()}
    runs, skipped = _same_clips(runs, reference)
    if not runs:
        return DatasetStats({}, None, None, 0, 0, 0, None, None, None, skipped)
    first = next(iter(runs.values()))
    n_clips = len(first.keys)
    n_seeds = max(len(r.seeds) for r in runs.values())
    rows = {}
    for name, r in runs.items():
        units, sizes = clip_units(r.correct.astype(np.float64), r.units)  # [S, units]: rows, clip means or cluster sums
        lo, hi = Resampler(len(r.seeds), units.shape[1], cfg, dataset).interval(units, sizes)
        rows[name] = RowStats(r.accuracy, lo, hi, len(r.seeds))
    ref = reference if reference in runs else None
    unis = [n for n, r in runs.items() if r.unimodal]
    best_uni = max(unis, key=lambda n: (runs[n].accuracy, n)) if unis else None
    family = []  # (row name, attribute) of every comparison in this dataset's Holm family
    for name in runs:
        for attr, other in (("vs_concat", ref), ("vs_unimodal", best_uni)):
            if other is not None and other != name:
                setattr(rows[name], attr, compare(runs[name], runs[other], cfg, dataset))
                family.append((name, attr))
    for (name, attr), p in zip(family, holm([getattr(rows[n], a).p for n, a in family])):
        getattr(rows[name], attr).p_holm = p
    _rank(rows, runs, cfg)
    # p_d of the comparisons the detectable difference is for, a method against Concat: a unimodal
    # run disagrees with Concat on far more clips, and counting it would make the figure depend
    # on how many unimodal runs a profile lists (all runs where no other multimodal run is there)
    vs = [n for n in rows if rows[n].vs_concat is not None]
    disc = [rows[n].vs_concat for n in ([n for n in vs if not runs[n].unimodal] or vs)]
    share = float(np.median([(c.b + c.c) / c.n_pairs for c in disc])) if disc else None
    pairs = n_seeds * n_clips
    mdd = minimum_detectable_difference(share, pairs, cfg.alpha, cfg.power) if share else None
    mdd_holm = minimum_detectable_difference(share, pairs, cfg.alpha, cfg.power, max(len(family), 1)) if share else None
    n_units = int(first.groups.max()) + 1 if first.groups is not None else 0
    return DatasetStats(rows, ref, best_uni, len(family), n_clips, n_seeds, share, mdd, mdd_holm, skipped, first.segments,
                        first.unit, n_units)


def _same_clips(runs: Mapping[str, RunCorrectness], reference: str) -> tuple[dict, dict]:
    """Runs scored on the reference run's clips (or the most common clip set) and the rest."""
    if not runs:
        return {}, {}
    base = runs[reference].keys if reference in runs else next(iter(runs.values())).keys
    keep = {n: r for n, r in runs.items() if np.array_equal(r.keys, base)}
    skipped = {n: "scored on other test clips than the reference run" for n in runs if n not in keep}
    return keep, skipped


def _rank(rows: dict[str, RowStats], runs: Mapping[str, RunCorrectness], cfg: StatsConfig) -> None:
    """Rank = 1 + runs significantly more accurate (McNemar, clustered where the rows are; Holm
    over all pairs of runs)."""
    names = list(runs)
    pairs, pvals, signs = [], [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca, cb = align(runs[a], runs[b])
            n01, n10, p = paired_test(runs[a], ca, cb)
            pairs.append((a, b))
            pvals.append(p)
            signs.append(np.sign(n01 - n10))
    better = {n: 0 for n in names}
    for (a, b), p, s in zip(pairs, holm(pvals), signs):
        if p < cfg.alpha and s != 0:
            better[b if s > 0 else a] += 1  # the less accurate run of a significant pair
    for n in names:
        rows[n].rank = 1 + better[n]


def stats_by_dataset(entries, cfg: StatsConfig, reference: str = "concat") -> dict[str, DatasetStats]:
    """``{dataset: DatasetStats}`` from ``(dataset, run, results folder)`` triples; runs without
    a ``predictions`` folder are left out (their rows show no interval)."""
    per: dict[str, dict[str, RunCorrectness]] = {}
    for dataset, run, folder in entries:
        loaded = load_run(run, Path(folder))
        if loaded is not None:
            per.setdefault(dataset, {})[run] = loaded
    return {ds: dataset_stats(runs, cfg, reference, ds) for ds, runs in per.items()}


def protocol_text(st: DatasetStats, cfg: StatsConfig) -> str:
    """The statistics paragraph printed under a leaderboard."""
    level = f"{100 * cfg.level:g} %"
    text = (
        f"Statistics. *Acc [{level} CI]*: mean accuracy over seeds and test clips with a two-level "
        f"percentile bootstrap ({cfg.bootstrap} replicates: seeds drawn with replacement, then test "
        "clips with replacement), computed from the saved per-clip predictions. *Δ vs Concat*: paired "
        "difference with the same bootstrap. *p*: McNemar's test over clips, discordant pairs pooled "
        f"over seeds (exact below {EXACT_BELOW} discordant pairs), Holm-corrected over the "
        f"{st.n_comparisons} comparisons of this table (each run against Concat and against the best "
        f"unimodal run); *vs Concat* / *vs best unimodal* read better or worse when the corrected "
        f"p < {cfg.alpha:g}, else no significant difference. *Rank* = 1 + the number of runs that are "
        "significantly more accurate (Holm over all pairs of runs), so runs whose differences are not "
        "significant share a rank."
    )
    if st.segments:
        text += (
            f" Event localisation: a row is one of a clip's {st.segments} segments. The bootstrap draws "
            "whole clips (their segments together), and *p* (also for the ranks) is McNemar's test for "
            "clustered pairs (Durkalski et al. 2003: each seed's clip one cluster of segments); the "
            "detectable difference below still counts segments as independent, so it is optimistic here."
        )
    elif st.unit:
        text += (
            f" Clustered rows: the {st.n_clips} test rows come from {st.n_units} {st.unit}s, and the rows "
            f"of one {st.unit} share its media. The bootstrap draws whole {st.unit}s (accuracy = rows "
            f"right / rows over the drawn {st.unit}s), and *p* (also for the ranks) is McNemar's test "
            f"for clustered pairs (Durkalski et al. 2003: each seed's {st.unit} one cluster); the "
            "detectable difference below still counts rows as independent, so it is optimistic here."
        )
    if st.mdd is not None:
        text += (
            f" With {st.n_clips} test clips × {st.n_seeds} seeds and a median {100 * st.discordance:.1f} % of "
            f"clips on which a multimodal run and Concat disagree, the smallest difference detected with "
            f"{100 * cfg.power:g} % power is {100 * st.mdd:.1f} points at p < {cfg.alpha:g} "
            f"({100 * st.mdd_holm:.1f} points after the Holm correction)."
        )
    return text
