"""PNG figures of the report, drawn from the training stages' curves and results files.

One set of figures per dataset (a handful of files however many runs there are, which keeps
the report stage fast):

- ``curves.png``: train loss, validation and test accuracy per epoch, one line per run (mean
  over seeds);
- ``probes.png``: per run, each modality's probe accuracy per epoch beside the fused test
  accuracy (the unimodal-accuracy curves of the GMM-AL paper's Fig. 4);
- ``per_class.png``: per run, test accuracy per class for the fused prediction and each
  modality (only when the results carry ``test.per_class_acc``);
- ``robustness.png``: accuracy against the drop probability of each modality (the OPM/OGM
  paper's Fig. 6 protocol);
- ``shapley.png``: each run's Shapley value per modality (bars, mean over seeds, with the
  Student-t interval over seeds).

Figures are deterministic: matplotlib defaults (no user style), Agg, fixed size and dpi, no
software/date metadata in the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmbalance.evaluate import curves as run_curves

from .papers import dataset_label, run_label
from .tables import MODALITY_NAMES, RobustnessSummary, RunSummary, ShapleySummary, mean_std, seed_interval

DPI = 100
STYLE = {"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "lines.linewidth": 1.2}
# Per-seed curves of a run: series ("train/train_loss", "test/acc", "val/probe_acc_audio")
# → seed → (steps, values).
Curves = dict[str, dict[str, tuple[list[int], list[float]]]]


def load_curves(run_dir: Path) -> Curves:
    """Every series of a run, from its ``curves.json`` (no file: no curves)."""
    path = run_dir / "curves.json"
    if not path.is_file():
        return {}
    out: Curves = {}
    for seed, per_series in run_curves.read(path).items():
        for name, series in per_series.items():
            out.setdefault(name, {})[seed] = (series["step"], series["value"])
    return out


def mean_curve(per_seed: Mapping[str, tuple[list[int], list[float]]]) -> tuple[list[int], list[float]]:
    """Mean over seeds at each step (a step averages the seeds that logged it)."""
    by_step: dict[int, list[float]] = {}
    for steps, values in per_seed.values():
        for s, v in zip(steps, values):
            by_step.setdefault(s, []).append(v)
    steps = sorted(by_step)
    return steps, [math.fsum(by_step[s]) / len(by_step[s]) for s in steps]


def _style(i: int) -> dict:
    """Colour and line style of the i-th run (10 colours, then dashed, dotted, dash-dotted)."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[(i // 10) % 4]}


def _integer_epochs(ax, nbins: int | str = "auto") -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))


def _margins(fig, height: float, bottom_in: float, top_in: float, **kw) -> None:
    """subplots_adjust with the bottom/top margins given in inches."""
    fig.subplots_adjust(bottom=bottom_in / height, top=1 - top_in / height, **kw)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` as PNG without software/date metadata (byte-identical reruns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def _pct(values: Sequence[float]) -> list[float]:
    return [100.0 * v for v in values]


def plot_curves(dataset: str, order: Sequence[str], curves: Mapping[str, Curves], path: Path) -> bool:
    """Train loss, validation and test accuracy per epoch, one line per run; False if no data."""
    panels = [("train/train_loss", "Train loss", False), ("val/acc", "Validation accuracy (%)", True),
              ("test/acc", "Test accuracy (%)", True)]
    runs = [r for r in order if any(s in curves.get(r, {}) for s, _, _ in panels)]
    if not runs:
        return False
    ncols = _legend_columns(13.0)
    legend_rows = math.ceil(len(runs) / ncols)
    height = 3.4 + 0.17 * legend_rows
    fig = _new_figure(13.0, height)
    axes = fig.subplots(1, 3)
    for ax, (series, title, pct) in zip(axes, panels):
        for r in runs:
            if series in curves[r]:
                x, y = mean_curve(curves[r][series])
                ax.plot(x, _pct(y) if pct else y, label=run_label(r), **_style(order.index(r)))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        _integer_epochs(ax)
    _legend_below(fig, axes, height, ncols)
    _margins(fig, height, 0.55 + 0.17 * legend_rows, 0.5, left=0.05, right=0.99, wspace=0.2)
    fig.suptitle(f"{dataset_label(dataset)}: training curves (mean over seeds)")
    save_figure(fig, path)
    return True


def _legend_columns(width: float) -> int:
    """Legend columns that fit a figure ``width`` inches wide (labels up to ~25 characters)."""
    return max(2, int(width // 2.6))


def _legend_below(fig, axes, height: float, ncols: int) -> None:
    """One figure legend (entries of every panel once) under the panels."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncols=min(ncols, len(labels)), frameon=False,
               bbox_to_anchor=(0.5, 0.02 / height))


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _probe_modalities(curves: Curves) -> list[str]:
    return sorted(s.removeprefix("test/probe_acc_") for s in curves if s.startswith("test/probe_acc_"))


def plot_probes(dataset: str, order: Sequence[str], curves: Mapping[str, Curves], path: Path) -> bool:
    """Per run: each modality's probe accuracy (test solid, validation dashed) and the fused
    test accuracy per epoch; False if no run logged probe curves.

    Small multiples sharing both axes, one legend and in-panel labels: per-axes titles,
    legends and tick labels dominate matplotlib's drawing time with ~20 panels.
    """
    runs = [r for r in order if _probe_modalities(curves.get(r, {}))]
    if not runs:
        return False
    # one colour per modality across all panels
    colours = {m: f"C{k}" for k, m in enumerate(sorted({m for r in runs for m in _probe_modalities(curves[r])}))}
    nrows, ncols = _grid(len(runs), 5)
    height, width = 1.9 * nrows + 1.1, max(2.6 * ncols, 6.0)
    fig = _new_figure(width, height)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    legend: dict[str, object] = {}
    for ax, r in zip(axes.ravel(), runs):
        for m in _probe_modalities(curves[r]):
            name = MODALITY_NAMES.get(m, m)
            x, y = mean_curve(curves[r][f"test/probe_acc_{m}"])
            legend[f"{name} probe (test)"] = ax.plot(x, _pct(y), color=colours[m])[0]
            if f"val/probe_acc_{m}" in curves[r]:
                x, y = mean_curve(curves[r][f"val/probe_acc_{m}"])
                legend[f"{name} probe (val)"] = ax.plot(x, _pct(y), color=colours[m], linestyle="--")[0]
        if "test/acc" in curves[r]:
            x, y = mean_curve(curves[r]["test/acc"])
            legend["Fused (test)"] = ax.plot(x, _pct(y), color="black", linewidth=0.8)[0]
        ax.text(0.03, 0.04, run_label(r), transform=ax.transAxes, fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5})
    first = axes[0, 0]
    first.set_ylim(0, 100)
    first.set_yticks([0, 50, 100])
    _integer_epochs(first, nbins=4)  # axes are shared: few ticks keep 20+ panels cheap to draw
    for ax in axes.ravel()[len(runs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncols=min(len(legend), 5),
               frameon=False, bbox_to_anchor=(0.5, 1 - 0.3 / height))
    fig.suptitle(f"{dataset_label(dataset)}: probe accuracy per modality (mean over seeds)", y=1 - 0.1 / height)  # above the legend
    _margins(fig, height, 0.45, 0.75, left=0.55 / width, right=1 - 0.1 / width, hspace=0.08, wspace=0.06)
    save_figure(fig, path)
    return True


# Up to this many classes, each column of the per-class heatmap is labelled with its class
_MAX_CLASS_LABELS = 40
# Up to this many classes, each cell of the heatmap carries its value
_MAX_ANNOTATED_CLASSES = 10


def _prediction_name(key: str) -> str:
    return "Fused" if key == "fused" else MODALITY_NAMES.get(key, key)


def _class_matrix(names: Sequence[str], runs: Mapping[str, RunSummary], key: str,
                  classes: Sequence[str]) -> list[list[float]]:
    """[runs, classes] mean test accuracy (%) of one prediction; NaN where a run lacks it."""
    rows = []
    for r in names:
        per = runs[r].per_class.get(key, {})
        rows.append([mean_std(per[c])[0] if per.get(c) else math.nan for c in classes])
    return rows


def _annotate(ax, matrix: list[list[float]]) -> None:
    """Each cell's value, white on the dark half of the colour map."""
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 55 else "black")


def plot_per_class(dataset: str, order: Sequence[str], runs: Mapping[str, RunSummary], path: Path) -> bool:
    """Test accuracy per class (mean over seeds) as heatmaps: one panel per prediction (fused,
    then each modality's probe), runs as rows in leaderboard order, classes as columns; False if
    no run carries per-class accuracies.

    One image per panel rather than one bar chart per run: with ~90 runs on a dataset a grid of
    bar charts is ~10,000 px tall and most of the report stage's drawing time.
    """
    names = [r for r in order if r in runs and runs[r].per_class]
    if not names:
        return False
    keys = list(dict.fromkeys(k for r in names for k in sorted(runs[r].per_class, key=lambda k: (k != "fused", k))))
    classes = list(dict.fromkeys(c for r in names for k in keys for c in runs[r].per_class.get(k, {})))
    panel_w = min(max(0.32 * len(classes), 2.2), 7.0)
    labelled = len(classes) <= _MAX_CLASS_LABELS
    # class names read upright only when few and short (CREMA-D's "ANG"); else turned 90°
    rotation = 90 if len(classes) > 8 or max(len(c) for c in classes) > 5 else 0
    left = 2.4
    bottom = 0.35 + 0.065 * max(len(c) for c in classes) if labelled and rotation else 0.5
    width, height = left + panel_w * len(keys) + 0.25 * (len(keys) - 1) + 0.9, 0.17 * len(names) + bottom + 0.75
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False).ravel()
    image = None
    for ax, k in zip(axes, keys):
        matrix = _class_matrix(names, runs, k, classes)
        image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_title(_prediction_name(k))
        if labelled:
            ax.set_xticks(range(len(classes)), classes, rotation=rotation)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(classes)} classes")
        if len(classes) <= _MAX_ANNOTATED_CLASSES:
            _annotate(ax, matrix)
    axes[0].set_yticks(range(len(names)), [run_label(r) for r in names])
    top = 1 - 0.6 / height
    fig.subplots_adjust(left=left / width, right=1 - 0.85 / width, bottom=bottom / height, top=top,
                        wspace=0.25 / panel_w)
    # the colour bar in the right margin, as tall as the panels
    bar = fig.add_axes((1 - 0.7 / width, bottom / height, 0.12 / width, top - bottom / height))
    fig.colorbar(image, cax=bar, label="test accuracy (%)")
    fig.suptitle(f"{dataset_label(dataset)}: test accuracy per class (mean over seeds)", y=1 - 0.12 / height)
    save_figure(fig, path)
    return True


def plot_robustness(summary: RobustnessSummary, order: Sequence[str], path: Path) -> bool:
    """Accuracy against drop probability, one panel per dropped modality, one line per run."""
    runs = [r for r in order if r in summary.accs] + sorted(set(summary.accs) - set(order))
    mods = list(dict.fromkeys(m for r in runs for m in summary.accs[r]))
    if not mods:
        return False
    width = max(4.2 * len(mods), 8.0)
    ncols = _legend_columns(width)
    legend_rows = math.ceil(len(runs) / ncols)
    height = 3.2 + 0.17 * legend_rows
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(mods), sharey=True, squeeze=False).ravel()
    xs = [100.0 * p for p in summary.drop_probs]
    for ax, m in zip(axes, mods):
        for i, r in enumerate(runs):
            cols = summary.accs[r].get(m)
            if cols is None:
                continue
            ys = [mean_std(c)[0] if c else float("nan") for c in cols]
            colour = order.index(r) if r in order else len(order) + i
            ax.plot(xs, ys, marker="o", markersize=3, label=run_label(r), **_style(colour))
        ax.set_title(f"{MODALITY_NAMES.get(m, m)} dropped")
        ax.set_xlabel("drop probability (%)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    _legend_below(fig, axes, height, ncols)
    _margins(fig, height, 0.55 + 0.17 * legend_rows, 0.5, left=0.6 / width, right=0.99, wspace=0.08)
    fig.suptitle(f"{dataset_label(summary.dataset)}: missing-modality robustness (mean over seeds)")
    save_figure(fig, path)
    return True


def plot_joint_robustness(summary: RobustnessSummary, order: Sequence[str], path: Path) -> bool:
    """The OPM/OGM paper's Fig. 6: one panel per fixed missing probability of the first modality,
    accuracy against the second modality's missing probability, one line per run."""
    if not summary.joint or summary.joint_probs is None:
        return False
    fixed_probs, varied_probs = summary.joint_probs
    runs = [r for r in order if r in summary.joint] + sorted(set(summary.joint) - set(order))
    width = max(4.2 * len(fixed_probs), 8.0)
    ncols = _legend_columns(width)
    legend_rows = math.ceil(len(runs) / ncols)
    height = 3.2 + 0.17 * legend_rows
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(fixed_probs), sharey=True, squeeze=False).ravel()
    xs = [100.0 * p for p in varied_probs]
    first = summary.joint[runs[0]]
    for i, (ax, pf) in enumerate(zip(axes, fixed_probs)):
        for j, r in enumerate(runs):
            ys = [mean_std(c)[0] if c else float("nan") for c in summary.joint[r]["acc"][i]]
            colour = order.index(r) if r in order else len(order) + j
            ax.plot(xs, ys, marker="o", markersize=3, label=run_label(r), **_style(colour))
        ax.set_title(f"{MODALITY_NAMES.get(first['fixed'], first['fixed'])} missing {100 * pf:g} %")
        ax.set_xlabel(f"{MODALITY_NAMES.get(first['varied'], first['varied'])} missing probability (%)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    _legend_below(fig, axes, height, ncols)
    _margins(fig, height, 0.55 + 0.17 * legend_rows, 0.5, left=0.6 / width, right=0.99, wspace=0.08)
    fig.suptitle(f"{dataset_label(summary.dataset)}: both modalities missing (OPM/OGM Fig. 6; mean over seeds)")
    save_figure(fig, path)
    return True


def plot_shapley(summary: ShapleySummary, order: Sequence[str], path: Path, level: float = 0.95) -> bool:
    """Grouped bars: per run (x), each modality's Shapley value in accuracy points, mean over
    seeds with its ``level`` Student-t interval over seeds; False without values."""
    runs = [r for r in order if summary.values.get(r)] + sorted(r for r in summary.values if r not in order and summary.values[r])
    mods = list(dict.fromkeys(m for r in runs for m in summary.values[r]))
    if not runs:
        return False
    width = max(0.38 * len(runs) * max(len(mods), 1) / 2 + 1.5, 6.0)
    height = 3.6
    fig = _new_figure(width, height)
    ax = fig.subplots()
    bar = 0.8 / len(mods)
    for j, m in enumerate(mods):
        xs, means, errs = [], [], [[], []]
        for i, r in enumerate(runs):
            values = [100.0 * v for v in summary.values[r].get(m, [])]
            if not values:
                continue
            mean, lo, hi = seed_interval(values, level)
            xs.append(i - 0.4 + bar * (j + 0.5))
            means.append(mean)
            errs[0].append(mean - lo if lo is not None else 0.0)
            errs[1].append(hi - mean if hi is not None else 0.0)
        ax.bar(xs, means, bar, yerr=errs, capsize=2, label=MODALITY_NAMES.get(m, m), color=f"C{j}",
               error_kw={"elinewidth": 0.8})
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(runs)), [run_label(r) for r in runs], rotation=60, ha="right")
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.set_ylabel("Shapley value (accuracy points)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", ncols=len(mods))
    fig.suptitle(f"{dataset_label(summary.dataset)}: modality contribution (Shapley value on the test set; "
                 f"mean over seeds, {100 * level:g} % t-interval)")
    _margins(fig, height, 1.25, 0.4, left=0.6 / width, right=0.99)
    save_figure(fig, path)
    return True


def render_dataset_plots(
    dataset: str,
    order: Sequence[str],
    runs: Mapping[str, RunSummary],
    curves: Mapping[str, Curves],
    robustness: RobustnessSummary | None,
    out_dir: Path,
    link_root: Path,
    shapley: ShapleySummary | None = None,
    level: float = 0.95,
) -> list[tuple[str, str]]:
    """Draw every figure of one dataset under ``out_dir/<dataset>/``.

    Returns (label, path relative to ``link_root``) for each figure written, in a fixed order;
    labels: "training curves", "probe curves", "per-class accuracy", "modality contribution
    (Shapley)", "robustness", "robustness (Fig. 6)".
    """
    import matplotlib

    folder = out_dir / dataset
    jobs = [
        ("training curves", "curves.png", lambda p: plot_curves(dataset, order, curves, p)),
        ("probe curves", "probes.png", lambda p: plot_probes(dataset, order, curves, p)),
        ("per-class accuracy", "per_class.png", lambda p: plot_per_class(dataset, order, runs, p)),
        ("modality contribution (Shapley)", "shapley.png", lambda p: shapley is not None and plot_shapley(shapley, order, p, level)),
        ("robustness", "robustness.png", lambda p: robustness is not None and plot_robustness(robustness, order, p)),
        ("robustness (Fig. 6)", "robustness_fig6.png",
         lambda p: robustness is not None and plot_joint_robustness(robustness, order, p)),
    ]
    links = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # ignore any user matplotlibrc: same pixels on every machine set-up
        matplotlib.rcParams.update(STYLE)
        for label, name, draw in jobs:
            if draw(folder / name):
                links.append((label, (folder / name).relative_to(link_root).as_posix()))
    return links


def clear_plots(out_dir: Path) -> None:
    """Remove PNGs left in ``out_dir`` by an earlier report (the folder holds only generated figures)."""
    if out_dir.is_dir():
        for png in sorted(out_dir.rglob("*.png")):
            png.unlink()
