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
    (``backbone: mmtm``), the frames per video its model reads (``frames: 1``) or an encoder set
    (``encoders: swin``): ablation, fusion, backbone and encoder rows of the papers are such
    variants, e.g. ``gmm_al__alpha0``, ``opm__sum``, ``arl__mmtm`` or ``arl__swin``. A variant's
    ``train_scale`` (factors on the ``train`` settings) is applied by ``scale_train``, not passed
    to the method.

    ``encoders: <name>`` replaces ``model.encoders`` by the top-level ``encoder_sets.<name>`` and
    drops the ``encoders`` of ``model.by_dataset.<dataset>`` (per-dataset overrides of the default
    set's encoders, which mean nothing to another set). The sets live outside ``model`` so that
    adding one changes neither the ``model`` params that stages declare nor the run-params files
    of the runs that do not use it (``run_params`` copies a set only into its runs' files). An
    unknown set raises ValueError naming the run and listing the sets.
    """
    cfg = dict(lookup(params, f"methods.{run}") or {})
    method = cfg.pop("method", run)
    cfg.pop("train_scale", None)
    cfg.pop("train", None)
    model = dict(lookup(params, "model"))
    for key in ("fusion", "backbone", "frames"):
        if key in cfg:
            model[key] = cfg.pop(key)
    if "encoders" in cfg:
        model = _with_encoder_set(model, params.get("encoder_sets") or {}, run, cfg.pop("encoders"))
    return method, cfg, model


def _with_encoder_set(model: dict, sets: dict, run: str, name: str) -> dict:
    """``model`` with ``encoders`` = ``sets[name]`` (at the same key position) and no ``encoders``
    in its ``by_dataset`` blocks."""
    if name not in sets:
        raise ValueError(f"params methods.{run}.encoders: no encoder set {name!r} in encoder_sets; "
                         f"choices: {', '.join(sorted(sets)) or 'none defined'}")
    model["encoders"] = sets[name]
    if isinstance(model.get("by_dataset"), dict):
        model["by_dataset"] = {ds: {k: v for k, v in (block or {}).items() if k != "encoders"}
                               for ds, block in model["by_dataset"].items()}
    return model


def scale_train(params: dict, run: str, train_cfg: dict) -> dict:
    """The run's ``train`` settings: ``train_cfg`` (already resolved for the dataset) with each key
    of ``methods.<run>.train_scale`` multiplied by its factor, e.g. ``{lr: 0.1}`` or
    ``{batch_size: 2}`` (the batch size rounded to a whole number). Factors, not values, so one
    variant means the same step away from the recipe in every profile and on every dataset (the
    batch-size / learning-rate rows of TPAMI 2024 Tab. 1). Then each key of ``methods.<run>.train``
    replaces the setting with its value, for a run whose model needs another recipe (the Swin
    runs' ``{optimizer: adamw, lr: 0.001, weight_decay: 0.05}``).

    Raises ValueError naming the run for a key missing from ``train``, a non-numeric setting or a
    factor that is not a positive number.
    """
    block = lookup(params, f"methods.{run}") or {}
    out = _scaled(run, dict(train_cfg), block.get("train_scale") or {})
    for key, value in (block.get("train") or {}).items():
        if key not in out:
            raise ValueError(f"params methods.{run}.train.{key}: no such train setting; train has {', '.join(sorted(out))}")
        out[key] = value
    return out


def _scaled(run: str, out: dict, scales: dict) -> dict:
    """``out`` with each ``train_scale`` factor applied (see ``scale_train``)."""
    for key, factor in scales.items():
        value = out.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"params methods.{run}.train_scale.{key}: train.{key} is {value!r}, not a number to scale")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ValueError(f"params methods.{run}.train_scale.{key} must be a positive number; got {factor!r}")
        out[key] = max(1, round(value * factor)) if isinstance(value, int) else value * factor
    return out


def split_options(params: dict, dataset: str, split_csv: str) -> dict:
    """Keyword arguments for ``adapter.scan``: the optional split CSV ('' = none) and the
    ``datasets.<dataset>.split`` block."""
    return {"split_csv": Path(split_csv) if split_csv else None, **lookup(params, f"datasets.{dataset}.split")}
