"""Report stage library: aggregate results, look up paper figures, render markdown and plots.

Typical use (what ``stages/report.py`` does)::

    runs = load_results(paths)
    index = PaperIndex(load_paper_numbers(csv_path), load_config())
    prov = Provenance(git_rev=git_revision(), params_hash=params_hash(params_path), device=device_name())
    write_report(render_summary(runs, index, methods, prov), out_path)
    for paper in index.config.papers:
        write_report(render_paper_page(paper, index, runs, index.config), pages_dir / page_name(paper))

The paper-row → run mapping, captions and comparison notes are data files in ``data/``.
Plots (``plots.py``) import matplotlib only when called.
"""

from .pages import coverage_summary, page_name, paper_table, render_paper_page
from .papers import (
    DATASET_NAMES,
    FUSION_NAMES,
    METHOD_NAMES,
    PAPERS,
    PaperIndex,
    PaperNumber,
    ReportConfig,
    RowMapping,
    TableCell,
    dataset_label,
    load_config,
    load_paper_numbers,
    load_paper_tables,
    method_label,
    paper_figure,
    run_label,
    run_name,
)
from .provenance import Provenance, device_name, git_revision, params_hash
from .render import markdown_table, render_summary, write_report
from .tables import (
    NOT_RUN,
    RobustnessSummary,
    RunSummary,
    Table,
    best_indices,
    competition_ranks,
    dataset_table,
    format_mean_std,
    load_results,
    load_robustness,
    mean_std,
    order_methods,
    paper_cell,
    robustness_table,
    summarize_robustness,
    summarize_run,
)

__all__ = [
    "DATASET_NAMES",
    "FUSION_NAMES",
    "METHOD_NAMES",
    "NOT_RUN",
    "PAPERS",
    "PaperIndex",
    "PaperNumber",
    "Provenance",
    "ReportConfig",
    "RobustnessSummary",
    "RowMapping",
    "RunSummary",
    "Table",
    "best_indices",
    "competition_ranks",
    "dataset_label",
    "dataset_table",
    "device_name",
    "format_mean_std",
    "git_revision",
    "load_config",
    "load_paper_numbers",
    "load_results",
    "load_robustness",
    "markdown_table",
    "mean_std",
    "method_label",
    "order_methods",
    "page_name",
    "paper_cell",
    "paper_figure",
    "paper_table",
    "coverage_summary",
    "load_paper_tables",
    "TableCell",
    "params_hash",
    "render_paper_page",
    "render_summary",
    "robustness_table",
    "run_label",
    "run_name",
    "summarize_robustness",
    "summarize_run",
    "write_report",
]
