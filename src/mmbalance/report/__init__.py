"""Report stage library: aggregate results, look up paper figures, render markdown.

Typical use (what ``stages/report.py`` does)::

    runs = load_results(paths)
    numbers = load_paper_numbers(csv_path)
    prov = Provenance(git_rev=git_revision(), params_hash=params_hash(params_path))
    write_report(render_summary(runs, numbers, methods, prov), out_path)
"""

from .papers import (
    DATASET_NAMES,
    FUSION_NAMES,
    METHOD_NAMES,
    PAPER_SPELLINGS,
    PAPERS,
    PaperNumber,
    dataset_label,
    load_paper_numbers,
    method_label,
    paper_figure,
    paper_spellings,
)
from .render import (
    Provenance,
    git_revision,
    markdown_table,
    params_hash,
    render_summary,
    write_report,
)
from .tables import (
    NOT_RUN,
    RunSummary,
    Table,
    best_indices,
    dataset_table,
    format_mean_std,
    load_results,
    mean_std,
    order_methods,
    summarize_run,
)

__all__ = [
    "DATASET_NAMES",
    "FUSION_NAMES",
    "METHOD_NAMES",
    "NOT_RUN",
    "PAPERS",
    "PAPER_SPELLINGS",
    "PaperNumber",
    "Provenance",
    "RunSummary",
    "Table",
    "best_indices",
    "dataset_label",
    "dataset_table",
    "format_mean_std",
    "git_revision",
    "load_paper_numbers",
    "load_results",
    "markdown_table",
    "mean_std",
    "method_label",
    "order_methods",
    "paper_figure",
    "paper_spellings",
    "params_hash",
    "render_summary",
    "summarize_run",
    "write_report",
]
