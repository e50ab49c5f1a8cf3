"""The IPRM page's t-SNE figure (IPRM Fig. 4) from the `embed` stages' JSON files.

One figure per dataset, ``plots/<dataset>/tsne.png``: a row per run (in params
``embedding.runs`` order: the paper's L-Mixup, MLA, LFM, IPRM), a column per view (each modality's
features, then the multimodal concatenation), points coloured by class; each panel's title
carries the paper's number, the mean distance of a sample to its class centre in the 2-D map.
A table beside it gives that number and the scale-free feature-space ratio for every panel.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .papers import dataset_label, run_label
from .tables import Table, markdown_table

__all__ = ["load_embeddings", "draw_tsne", "embedding_section"]


def load_embeddings(paths: Iterable[Path], order: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[dict]]:
    """dataset → the embed stage results of its runs, in ``order[dataset]`` (params
    ``embedding.runs``: the figure's row order), runs not listed there after them in file order."""
    out: dict[str, list[dict]] = {}
    for path in paths:
        body = json.loads(Path(path).read_text())
        missing = [k for k in ("dataset", "run", "views", "labels", "points", "spread_2d", "spread_ratio") if k not in body]
        if missing:
            raise ValueError(f"{path}: not an embed stage result (missing {missing})")
        out.setdefault(body["dataset"], []).append(body)
    for dataset, results in out.items():
        rank = {run: i for i, run in enumerate((order or {}).get(dataset, []))}
        results.sort(key=lambda r: rank.get(r["run"], len(rank)))  # stable: unlisted runs keep file order
    return out


def draw_tsne(dataset: str, results: Sequence[dict], path: Path) -> Path:
    """Panels run × view of the 2-D points, coloured by class → ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = list(results[0]["views"])
    fig, axes = plt.subplots(len(results), len(views), figsize=(3.2 * len(views), 3.0 * len(results)), squeeze=False)
    for i, res in enumerate(results):
        for j, view in enumerate(views):
            ax = axes[i][j]
            pts = res["points"].get(view) or []
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, c=res["labels"], cmap="tab10", s=4, linewidths=0)
            ax.set_title(f"{run_label(res['run'])} · {view}\nmean distance {res['spread_2d'].get(view, float('nan')):.2f}",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"t-SNE of the test embeddings, {dataset_label(dataset)} (seed {results[0].get('model_seed', 0)} models)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def embedding_section(embeddings: dict[str, list[dict]], out_dir: Path, draw: bool = True) -> str | None:
    """The IPRM page's "Fig. 4" section (markdown, figures under ``out_dir/plots``), or None when
    no embed stage ran."""
    if not embeddings:
        return None
    parts = ["## t-SNE of the learned embeddings (paper Fig. 4)",
             "The paper draws t-SNE maps of the embeddings of L-Mixup, MLA, LFM and IPRM on CREMA-D and prints in each "
             "panel the mean distance of a sample to its class centre (smaller: more discriminative; the paper finds "
             "IPRM's smallest, most clearly on video). Here: the test split through each run's seed-0 model, each "
             "modality's encoder features and their concatenation (*multimodal*), `embed` stages (params "
             "`embedding`). *t-SNE distance* is the paper's number, measured in the 2-D map; t-SNE distances depend "
             "on the perplexity and the other points, so *feature ratio* adds a scale-free one, measured in the "
             "feature space: mean distance to the own class centre over mean distance to the centre of all samples "
             "(1 = no class structure, 0 = classes collapsed to points). The paper prints its distances only inside "
             "the figure, so no paper column is given."]
    for dataset, results in sorted(embeddings.items()):
        views = list(results[0]["views"])
        if draw:
            png = draw_tsne(dataset, results, out_dir / "plots" / dataset / "tsne.png")
            parts.append(f"![t-SNE, {dataset_label(dataset)}]({png.relative_to(out_dir).as_posix()})")
        header = ["Run", *[f"t-SNE distance, {v}" for v in views], *[f"feature ratio, {v}" for v in views]]
        rows = [[run_label(r["run"]), *[f"{r['spread_2d'][v]:.2f}" for v in views],
                 *[f"{r['spread_ratio'][v]:.3f}" for v in views]] for r in results]
        parts.append(f"**{dataset_label(dataset)}** ({len(results[0]['labels'])} test clips, perplexity "
                     f"{results[0].get('perplexity', 30):g})")
        parts.append(markdown_table(Table(header, rows, [False] + [True] * (2 * len(views)))))
    return "\n\n".join(parts)
