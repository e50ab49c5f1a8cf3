"""Hyper-parameter sensitivity sweeps (the ``sweep-<name>`` stages): one run trained with every
seed at each value of one of its params, the papers' sensitivity figures (IPRM Fig. 2, OPM/OGM
TPAMI 2024 Fig. 9).

params.yaml ``sweeps`` declares each swept parameter under a name::

    sweeps:
      iprm_alpha:
        run: iprm                         # a run under params methods
        param: alpha                      # set like a tune.space key (mmbalance.tune.apply_trial)
        values: [0.1, 0.3, 0.5, 0.7, 0.9]
        datasets: [cremad]
        default: 0.8                      # the paper's value, marked on the figure (or {dataset: value})

``param`` follows the equal-budget tuning's keys: ``train.<key>`` / ``model.<key>`` set those
blocks, anything else the run's method block (which must already hold the key). A sweep point is
(dataset, run, param, value); its outputs, the train stage's (``results.json``, ``metrics.json``,
``curves.json``, ``predictions/``), go to ``results/sweeps/<dataset>/<run>/<param>=<value>/`` and its
``results.json`` carries ``sweep: {param, value}``. The value is written as DVC writes a matrix
value into the command line (``str``), so the folder name is the stage's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("run", "param", "values", "datasets")


@dataclass(frozen=True)
class Point:
    """One sweep point: ``run`` trained on ``dataset`` with ``param`` set to ``value``."""

    sweep: str
    dataset: str
    run: str
    param: str
    value: float | int | str

    @property
    def folder(self) -> str:
        """``<param>=<value>``: the point's results folder under ``<dataset>/<run>/``."""
        return f"{self.param}={value_text(self.value)}"

    @property
    def stage(self) -> str:
        """The DVC stage dvc.yaml generates for the point (matrix: run, param, dataset, value)."""
        return f"sweep-{self.sweep}@{self.run}-{self.param}-{self.dataset}-{value_text(self.value)}"


def value_text(value) -> str:
    """A value as DVC interpolates a matrix item into a command (``true``/``false``, else ``str``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(text: str):
    """A command-line value back to a number where it is one (``0.1`` → 0.1, ``4`` → 4)."""
    import yaml

    value = yaml.safe_load(text)
    return value if isinstance(value, (int, float, str, bool)) else text


def check_sweep(name: str, block) -> dict:
    """A ``sweeps.<name>`` block after checking it; ``ValueError`` naming the key otherwise."""
    if not isinstance(block, Mapping):
        raise ValueError(f"params sweeps.{name}: expected a mapping with {', '.join(FIELDS)}, got {block!r}")
    missing = [f for f in FIELDS if f not in block]
    if missing:
        raise ValueError(f"params sweeps.{name}: missing {', '.join(missing)}")
    for key in ("run", "param"):
        if not isinstance(block[key], str) or not block[key]:
            raise ValueError(f"params sweeps.{name}.{key}: expected a name, got {block[key]!r}")
    for key in ("values", "datasets"):
        items = block[key]
        # an empty `datasets` declares the sweep (its default, its figure) without running it here
        if not isinstance(items, list) or (key == "values" and not items):
            kind = "a non-empty list" if key == "values" else "a list"
            raise ValueError(f"params sweeps.{name}.{key}: expected {kind}, got {items!r}")
        texts = [value_text(v) for v in items]
        if len(set(texts)) != len(texts):
            raise ValueError(f"params sweeps.{name}.{key}: repeated entries in {items!r}")
    if any(isinstance(v, (list, dict)) for v in block["values"]):
        raise ValueError(f"params sweeps.{name}.values: scalars only (each names a folder), got {block['values']!r}")
    return dict(block)


def expand_points(sweeps: Mapping | None) -> list[Point]:
    """Every point of params ``sweeps``: sweeps in declaration order, then datasets, then values as
    listed (dvc.yaml's matrix order). Two sweeps may not share a (dataset, run, param, value)."""
    points, seen = [], {}
    for name, block in (sweeps or {}).items():
        block = check_sweep(name, block)
        for dataset in block["datasets"]:
            for value in block["values"]:
                point = Point(name, str(dataset), block["run"], block["param"], value)
                key = (point.dataset, point.run, point.folder)
                if key in seen:
                    raise ValueError(f"params sweeps.{name} and sweeps.{seen[key]} both train "
                                     f"{point.dataset}/{point.run}/{point.folder}")
                seen[key] = name
                points.append(point)
    return points


def default_value(block: Mapping, dataset: str) -> float | None:
    """The paper's value of a sweep on ``dataset``: ``default`` (a number, or one per dataset); None if unset."""
    default = block.get("default")
    if isinstance(default, Mapping):
        default = default.get(dataset)
    if default is None:
        return None
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
        raise ValueError(f"params sweeps: default {default!r} of {block.get('run')}.{block.get('param')} is not a number")
    return float(default)


def point_config(params: Mapping, dataset: str, run: str, param: str, value) -> tuple[str, dict, dict, dict]:
    """(method, method params, model params, train params) of a point: the run's params as the
    train stage resolves them, with ``param`` set to ``value`` by the tuning's override."""
    from mmbalance.train.run import run_settings
    from mmbalance.tune import apply_trial

    method, method_cfg, model_cfg, train_cfg = run_settings(params, run, dataset)
    try:
        method_cfg, model_cfg, train_cfg = apply_trial({param: value}, method_cfg, model_cfg, train_cfg, dataset)
    except KeyError as e:
        raise KeyError(f"sweep of run {run!r}: {e.args[0]}") from None
    return method, method_cfg, model_cfg, train_cfg


def run_point(shard_dir: Path, out_dir: Path, dataset: str, run: str, param: str, value, params: Mapping,
              live: Path | None = None) -> dict:
    """Train one sweep point with every seed of params ``seeds`` into ``out_dir`` (the train
    stage's outputs); ``results.json`` gains ``sweep: {param, value}``. Returns the results.

    Reads params ``profile``, ``seeds``, ``train``, ``model`` and ``methods.<run>``."""
    from mmbalance.params import lookup
    from mmbalance.train.distributed import is_main
    from mmbalance.train.run import run as train_run

    method, method_cfg, model_cfg, train_cfg = point_config(params, dataset, run, param, value)
    results = train_run(shard_dir, out_dir, dataset, method, method_cfg, model_cfg, train_cfg, lookup(params, "seeds"),
                        lookup(params, "profile"), run_name=run, live=live)
    results["sweep"] = {"param": param, "value": value}
    # under torchrun every rank returns the same results; rank 0 writes them
    if is_main():
        (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results

