"""Stage `report`: render reports/README.md, one page per seed paper and the PNG plots from the
training stages' results.json files, their curves.json, the robustness.json and shapley.json
files of the evaluate stages and the costs.json files of the costs stages (with, for the runs of
another profile that those files lack, the entries kept in results/archive/).

Also lists each dataset's clip counts and skipped clips from its shard index.json (--indexes).

Reads params: profile, benchmark, stats, sweeps, embedding.runs, tune.runs (and hashes the whole params file for provenance).
The statistics (intervals, paired tests, ranks) come from each run's predictions/ folder beside
its results.json.
Writes next to --out: <paper>.md for each seed paper and plots/<dataset>/*.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmbalance.params import load_params, lookup
from mmbalance.report import (
    PaperIndex,
    Provenance,
    device_name,
    git_revision,
    load_config,
    load_paper_numbers,
    load_paper_tables,
    load_results,
    load_robustness,
    coverage_summary,
    page_name,
    params_hash,
    render_paper_page,
    render_summary,
    write_report,
)
from mmbalance.report.data_summary import load_data_summaries
from mmbalance.report.diagnostics import diagnostics_section
from mmbalance.report.embedding import embedding_section, load_embeddings
from mmbalance.report.gmm_fit import first_fit_section
from mmbalance.report.released_code import released_code_section
from mmbalance.report.render import mini_note
from mmbalance.report.stats import StatsConfig, stats_by_dataset
from mmbalance.report.tables import (
    leaderboard_order,
    load_costs,
    load_shapley,
    ordered_datasets,
    with_archived_costs,
    with_archived_shapley,
    with_step_ratios,
)


def existing(paths: list[str], what: str) -> list[Path]:
    """The paths that exist; a shell pattern that matched nothing (left unexpanded) is reported
    and skipped, any other missing path is an error."""
    out = []
    for p in paths:
        path = Path(p)
        if path.exists():
            out.append(path)
        elif any(c in p for c in "*?["):
            print(f"report: no {what} match {p!r}", file=sys.stderr)
        else:
            raise SystemExit(f"report: {what} file {p} does not exist")
    return out


def declared(params: dict, dotted: str):
    """``lookup(params, dotted)``, or None where the params file has no such key."""
    try:
        return lookup(params, dotted)
    except KeyError:
        return None


def expected_runs(params: dict, params_path: Path, explicit: list[str] | None) -> list[str] | dict[str, list[str]]:
    """Row lists: --methods for every dataset, else each dataset's ``benchmark.<dataset>``."""
    if explicit:
        return explicit
    try:
        bench = lookup(params, "benchmark") or {}
    except KeyError as e:
        raise SystemExit(f"report: {e.args[0]} in {params_path} (or pass --methods)") from None
    if not isinstance(bench, dict):
        raise SystemExit(f"report: params benchmark in {params_path} must map each dataset to its runs")
    return {ds: list(names or []) for ds, names in bench.items()}


def load_stats(params: dict, runs) -> tuple[dict, StatsConfig]:
    """Per-dataset statistics from the runs' saved predictions, and the ``stats`` params."""
    cfg = StatsConfig.from_params(declared(params, "stats"))
    entries = [(r.dataset, r.run, Path(r.source).parent) for r in runs if r.source]
    return stats_by_dataset(entries, cfg), cfg


TUNED_PAGE = "tuned.md"


def write_tuned(paths: list[Path], untuned, cfg: StatsConfig, out: Path, tuned_here=None) -> None:
    """``tuned.md`` beside the summary: the equal-budget leaderboard of the tuned runs
    (``tuned_here``: params ``tune.runs``, the runs this profile tunes)."""
    from mmbalance.report.tuned import load_trials, render_tuned_page

    tuned = load_results(paths)
    entries = [(r.dataset, r.run, Path(r.source).parent) for r in tuned if r.source]
    stats = stats_by_dataset(entries, cfg)
    trials = {(r.dataset, r.run): load_trials(Path(r.source)) for r in tuned if r.source}
    write_report(render_tuned_page(tuned, stats, cfg, untuned, trials, out.name, tuned_here), out.parent / TUNED_PAGE)


def draw_plots(out_dir: Path, runs, robustness, methods, stats=None, shapley=None, level: float = 0.95) -> dict[str, list[tuple[str, str]]]:
    """Every dataset's figures under ``out_dir/plots`` (old PNGs removed first); links by dataset."""
    from mmbalance.report.plots import clear_plots, load_curves, render_dataset_plots

    plots_dir = out_dir / "plots"
    clear_plots(plots_dir)
    links = {}
    for ds in ordered_datasets([*runs, *robustness.values()], []):
        by_run = {r.run: r for r in runs if r.dataset == ds}
        wanted = methods if isinstance(methods, list) else methods.get(ds, [])
        ranks = {r: s.rank for r, s in stats[ds].rows.items()} if stats and ds in stats else None
        order, _ = leaderboard_order(wanted, by_run, ranks)
        curves = {r.run: load_curves(Path(r.source).parent) for r in by_run.values() if r.source}
        links[ds] = render_dataset_plots(ds, order, by_run, curves, robustness.get(ds), plots_dir, out_dir,
                                         (shapley or {}).get(ds), level)
    return links


def embedding_order(params: dict) -> dict[str, list[str]]:
    """params ``embedding.runs``: each dataset's t-SNE runs in the order its figure draws them."""
    return dict(declared(params, "embedding.runs") or {})


def tune_runs(params: dict) -> dict[str, list[str]] | None:
    """params ``tune.runs``: the runs this profile tunes, per dataset (None without the block)."""
    runs = declared(params, "tune.runs")
    return None if runs is None else {ds: list(names or []) for ds, names in runs.items()}


def swept_pairs(params: dict) -> set[tuple[str, str]] | None:
    """The (dataset, run) pairs of the points params ``sweeps`` runs in this profile (None
    without the block)."""
    from mmbalance.sweeps import expand_points

    sweeps = declared(params, "sweeps")
    return None if sweeps is None else {(p.dataset, p.run) for p in expand_points(sweeps)}


def load_sweep_points(paths: list[Path], params: dict) -> list:
    """The sweep stages' points, each with the paper's default from params ``sweeps``."""
    from mmbalance.report.sweeps import load_sweeps

    return load_sweeps(paths, declared(params, "sweeps"))


def draw_diagnostics(out_dir: Path, runs, sweeps=(), swept_here=None) -> list:
    """The seed methods' diagnostics figures of every dataset under ``out_dir/plots`` (after
    ``draw_plots`` cleared it), the sensitivity figures from ``sweeps`` (``swept_here``: the
    (dataset, run) pairs this profile sweeps); each figure with its link or the reason it is
    missing."""
    from mmbalance.report.diagnostics import render_diagnostics
    from mmbalance.report.plots import load_curves

    drawn = []
    for ds in ordered_datasets(runs, []):
        by_run = {r.run: r for r in runs if r.dataset == ds}
        curves = {r.run: load_curves(Path(r.source).parent) for r in by_run.values() if r.source}
        drawn += render_diagnostics(ds, by_run, curves, out_dir / "plots", out_dir, sweeps, swept_here)
    return drawn


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", nargs="*", default=[], help="results.json, one per (dataset, run)")
    ap.add_argument("--tuned", nargs="*", default=[],
                    help="results.json of the tune stages (results/tuned/<dataset>/<run>/) → tuned.md beside --out")
    ap.add_argument("--sweeps", nargs="*", default=[],
                    help="results.json of the sweep stages (results/sweeps/<dataset>/<run>/<param>=<value>/) → sensitivity figures")
    ap.add_argument("--robustness", nargs="*", default=[], help="robustness.json, one per dataset (stages/evaluate.py)")
    ap.add_argument("--embeddings", nargs="*", default=[],
                    help="t-SNE results of the embed stages (results/embedding/<dataset>/<run>.json) → IPRM Fig. 4")
    ap.add_argument("--costs", nargs="*", default=[], help="costs.json, one per dataset (stages/costs.py)")
    ap.add_argument("--shapley", nargs="*", default=[], help="shapley.json, one per dataset (stages/evaluate.py --shapley)")
    ap.add_argument("--archived-costs", nargs="*", default=[],
                    help="results/archive/<dataset>/costs.json: costs of runs the costs files lack (another profile's)")
    ap.add_argument("--archived-shapley", nargs="*", default=[],
                    help="results/archive/<dataset>/shapley.json: Shapley values of runs the shapley files lack")
    ap.add_argument("--indexes", nargs="*", default=[], help="shard index.json files: clip counts and skipped clips per dataset")
    ap.add_argument("--paper-numbers", required=True, help="reference/paper_numbers.csv")
    ap.add_argument("--paper-tables", default=None,
                    help="reference/paper_tables.csv: every cell of the papers' tables for their pages (default: the paper numbers)")
    ap.add_argument("--params", required=True, help="params.yaml (hashed for provenance)")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="expected runs, for every dataset; missing ones read 'not run' (default: params benchmark.<dataset>)")
    ap.add_argument("--out", required=True, help="summary markdown, e.g. reports/README.md; pages and plots go beside it")
    ap.add_argument("--git-rev", default=None, help="revision to record (default: git rev-parse HEAD)")
    ap.add_argument("--device", default=None, help="device to record when results lack one (default: this machine's)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    args = ap.parse_args(argv)

    out = Path(args.out)
    prov = Provenance(git_rev=args.git_rev or git_revision(), params_hash=params_hash(args.params),
                      device=args.device or device_name())
    params = load_params(Path(args.params))  # read once: every helper below takes its block from it
    methods = expected_runs(params, Path(args.params), args.methods)
    runs = load_results(existing(args.results, "results"))
    robustness = load_robustness(existing(args.robustness, "robustness"))
    costs = with_archived_costs(load_costs(existing(args.costs, "costs")),
                                load_costs(existing(args.archived_costs, "archived costs")))
    runs = with_step_ratios(runs, costs)
    shapley = with_archived_shapley(load_shapley(existing(args.shapley, "shapley")),
                                    load_shapley(existing(args.archived_shapley, "archived shapley")))
    embeddings = load_embeddings(existing(args.embeddings, "embedding results"), embedding_order(params))
    data = load_data_summaries(existing(args.indexes, "shard index"))
    config = load_config()
    index = PaperIndex(load_paper_numbers(args.paper_numbers), config)
    cells = load_paper_tables(args.paper_tables) if args.paper_tables else index

    stats, stats_cfg = load_stats(params, runs)
    plots = {} if args.no_plots else draw_plots(out.parent, runs, robustness, methods, stats, shapley, stats_cfg.level)
    sweeps = [] if args.no_plots else load_sweep_points(existing(args.sweeps, "sweep results"), params)
    diagnostics = [] if args.no_plots else draw_diagnostics(out.parent, runs, sweeps, swept_pairs(params))
    pages = [(config.papers[p]["short"], page_name(p)) for p in config.papers] + [("Tuned, equal budget", TUNED_PAGE)]
    coverage = coverage_summary(cells, runs, config, methods)
    write_report(render_summary(runs, index, methods, prov, robustness, plots, pages, data, stats, stats_cfg, coverage,
                                costs, shapley), out)
    write_tuned(existing(args.tuned, "tuned results"), runs, stats_cfg, out, tune_runs(params))
    mini = any(r.profile == "mini" for r in runs)
    for paper in config.papers:
        sections = [diagnostics_section(paper, diagnostics)]
        if paper == "gmm_adaptive_loss":  # the first mixture fit beside the paper's Fig. 2
            sections.insert(0, first_fit_section(runs))
        if paper == "iprm":  # the t-SNE panels of the paper's Fig. 4
            sections.append(embedding_section(embeddings, out.parent, draw=not args.no_plots))
        sections.insert(0, released_code_section(paper, config, runs, stats, stats_cfg, index, methods))
        text = render_paper_page(paper, cells, runs, config, out.name, mini, mini_note(), [s for s in sections if s],
                                 expected=methods)
        write_report(text, out.parent / page_name(paper))


if __name__ == "__main__":
    main()
