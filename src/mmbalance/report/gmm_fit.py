"""GMM-AL's first mixture fit beside the paper's (GMM-AL §3.2, Fig. 2).

The paper fits its two-component GMM to the training-set modality gaps of a warm-up model
"trained to an initially converged" state on CREMA-D and reports the balanced component at
μ = 0.0056 with weight 0.857 and the imbalanced one at μ = 0.6966 with weight 0.143. Every
GMM-AL run of ours stores each seed's fits in ``results.json`` (``diagnostics.fits``); this module
turns the first fit of every seed into one table row per (dataset, run) and checks it against
the paper's description within :data:`TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .diagnostics import load_diagnostics
from .papers import dataset_label, run_label
from .tables import RunSummary, Table, markdown_table, mean_std_raw

__all__ = ["PAPER_FIRST_FIT", "TOLERANCE", "FirstFit", "first_fit", "first_fit_rows", "first_fit_section", "within_tolerance"]

# GMM-AL §3.2 / Fig. 2 (CREMA-D, after the warm-up): balanced weight and mean, imbalanced mean
PAPER_FIRST_FIT = {"pi_balanced": 0.857, "mu_balanced": 0.0056, "mu_imbalanced": 0.6966}
# What "matches the paper's description" means here: the balanced share and the imbalanced mean
# within 0.10 of the paper's; the balanced mean within 0.25 of 0 (the mini data's clips whose
# audio carries another class's tone favour the visual side, so the central component sits
# slightly below 0; the paper's real data has no such designed group)
TOLERANCE = {"pi_balanced": 0.10, "mu_balanced": 0.25, "mu_imbalanced": 0.10}


@dataclass(frozen=True)
class FirstFit:
    """The first mixture fit of one seed: the epoch it was fitted at (= the warm-up length), the
    balanced component's weight and mean, the imbalanced component's mean."""

    epoch: int
    pi_balanced: float
    mu_balanced: float
    mu_imbalanced: float


def first_fit(diagnostics: Mapping) -> FirstFit | None:
    """The earliest fit in one seed's ``diagnostics`` (components ordered balanced first), or None."""
    fits = [f for f in diagnostics.get("fits") or [] if f.get("weights") and f.get("means")]
    if not fits:
        return None
    f = min(fits, key=lambda x: x["epoch"])
    return FirstFit(int(f["epoch"]), float(f["weights"][0]), float(f["means"][0]), float(f["means"][1]))


def within_tolerance(fits: Sequence[FirstFit]) -> bool:
    """Whether the seeds' mean first fit matches the paper's numbers within :data:`TOLERANCE`."""
    if not fits:
        return False
    for key, tol in TOLERANCE.items():
        mean = sum(getattr(f, key) for f in fits) / len(fits)
        if abs(mean - PAPER_FIRST_FIT[key]) > tol:
            return False
    return True


def _cell(values: list[float]) -> str:
    mean, std = mean_std_raw(values)
    return f"{mean:.3f} ± {std:.3f}"


def first_fit_rows(runs: Iterable[RunSummary]) -> list[list[str]]:
    """One row per (dataset, run) whose ``results.json`` stores mixture fits: dataset, run, seeds,
    warm-up epochs, π balanced, μ balanced, μ imbalanced (mean ± std over seeds), and whether it
    matches the paper."""
    rows = []
    for r in runs:
        if r.method != "gmm_al" or not r.source:
            continue
        fits = [f for d in load_diagnostics(r.source).values() if (f := first_fit(d)) is not None]
        if not fits:
            continue
        epochs = sorted({f.epoch for f in fits})
        rows.append([dataset_label(r.dataset), f"{run_label(r.run)} (`{r.run}`)", str(len(fits)),
                     "/".join(str(e) for e in epochs),
                     _cell([f.pi_balanced for f in fits]), _cell([f.mu_balanced for f in fits]),
                     _cell([f.mu_imbalanced for f in fits]), "yes" if within_tolerance(fits) else "no"])
    return rows


def first_fit_section(runs: Iterable[RunSummary]) -> str | None:
    """The GMM-AL page's "First GMM fit" section (markdown), or None when no run stored a fit."""
    rows = first_fit_rows(runs)
    if not rows:
        return None
    paper = PAPER_FIRST_FIT
    header = ["Dataset", "Run", "Seeds", "Warm-up epochs", "π balanced", "μ balanced", "μ imbalanced", "Matches the paper"]
    rows.append(["CREMA-D (paper, Fig. 2)", "GMM-AL", "—", "not stated", f"{paper['pi_balanced']:.3f}",
                 f"{paper['mu_balanced']:.4f}", f"{paper['mu_imbalanced']:.4f}", "—"])
    tol = TOLERANCE
    return "\n\n".join([
        "## First GMM fit (paper §3.2, Fig. 2)",
        "The two-component mixture fitted to the training-set gaps g = s_y(audio) − s_y(visual) right after the "
        "warm-up, per run: the balanced component's weight π and mean μ, the imbalanced component's mean "
        "(mean ± std over seeds, the first fit of each seed in `results.json` → `diagnostics.fits`). "
        f"*Matches the paper*: the seeds' mean π balanced within {tol['pi_balanced']:.2f} of 0.857, μ imbalanced "
        f"within {tol['mu_imbalanced']:.2f} of 0.697 and μ balanced within {tol['mu_balanced']:.2f} of 0. "
        "The paper warms up to \"an initially converged model\" (length not stated): `gmm_al__converged_warmup` "
        "mirrors that with a 30-epoch warm-up, where the default `gmm_al` run starts its adaptive phase after 10 "
        "epochs, before the weak modality's encoder has fitted the training set.",
        markdown_table(Table(header, rows, [False, False, True, True, True, True, True, False])),
    ])
