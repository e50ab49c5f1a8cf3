"""Reading the params file: stages read only the keys they declare in dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_params(path: Path) -> dict:
    """Parse a params YAML file."""
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def lookup(params: dict, dotted: str):
    """``lookup(p, "methods.ogm_ge")`` → ``p["methods"]["ogm_ge"]``; a missing key names the path."""
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params key {dotted!r} is missing (no {part!r})")
        node = node[part]
    return node


def resolve_run(params: dict, run: str) -> tuple[str, dict, dict]:
    """A run name → (registered method, its params, model params).

    ``methods.<run>`` is either a method's own block (run name = method name) or a variant block
    naming its method (``method: gmm_al``) and optionally a fusion (``fusion: sum``), a backbone
    (``backbone: mmtm``) or the frames per video its model reads (``frames: 1``): ablation, fusion
    and backbone rows of the papers are such variants, e.g.
    ``gmm_al__alpha0``, ``opm__sum`` or ``arl__mmtm``.
    """
    cfg = dict(lookup(params, f"methods.{run}") or {})
    method = cfg.pop("method", run)
    model = dict(lookup(params, "model"))
    for key in ("fusion", "backbone", "frames"):
        if key in cfg:
            model[key] = cfg.pop(key)
    return method, cfg, model


def split_options(params: dict, dataset: str, split_csv: str) -> dict:
    """Keyword arguments for ``adapter.scan``: the optional split CSV ('' = none) and the
    ``datasets.<dataset>.split`` block."""
    return {"split_csv": Path(split_csv) if split_csv else None, **lookup(params, f"datasets.{dataset}.split")}
