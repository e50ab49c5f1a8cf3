"""Each run's own params file, split from params.yaml, for the stages that train one run.

DVC re-reads and re-parses the whole params file for every stage that declares a params
dependency. With ~230 training stages and a params.yaml of ~1,700 lines that parsing was most of
a no-op ``dvc repro`` and a fixed cost per stage of a full one. The ``run-params`` stage reads
params.yaml once and writes ``<run>.yaml`` for every run of ``methods``: the keys a training stage
reads (``profile``, ``seeds``, ``train``, ``model``, ``methods.<run>`` and the encoder set the run
picks, if any), in the same nesting as params.yaml. A training stage depends on its run's file and reads its settings from it; editing
one run's block (``dvc exp run -S methods.arl.alpha=0.5``) rewrites the files of all runs, but only
the edited run's file changes, so only that run's stages re-run. ``datasets/<dataset>.yaml``
gathers the files of a dataset's runs for the costs stage.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mmbalance.outputs import remove_unlisted, write_if_changed
from mmbalance.params import lookup

# the top-level keys every training run reads, besides its own ``methods.<run>`` block
SHARED_KEYS = ("profile", "seeds", "train", "model")


def run_params(params: dict, run: str) -> dict:
    """The params a training stage of ``run`` reads: ``{profile, seeds, train, model,
    methods: {run: …}}``, values untouched (a missing key names its path), plus
    ``encoder_sets: {name: …}`` holding only the set a run picks with ``encoders: <name>``: the
    files of the other runs stay byte for byte when a set is added or edited."""
    block = lookup(params, f"methods.{run}")
    out = {**{key: lookup(params, key) for key in SHARED_KEYS}, "methods": {run: block}}
    name = (block or {}).get("encoders")
    if name is not None:
        out["encoder_sets"] = {name: lookup(params, f"encoder_sets.{name}")}
    return out


def dump(body: dict) -> str:
    """``body`` as YAML, keys in params.yaml's order (the model's modules are built in that order).

    Raises ValueError if the text does not load back to exactly ``body``."""
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
    if yaml.safe_load(text) != body:
        raise ValueError("run params do not survive a YAML round trip: " + ", ".join(sorted(body)))
    return text


def write_dataset_run_params(params: dict, out: Path) -> list[Path]:
    """``<out>/<dataset>.yaml`` for every dataset of ``benchmark``: ``{run: run_params(...)}`` for
    each of its runs, in list order (the costs stage times every run of a dataset with the settings
    it trained with, and depends on this one file: editing one run's block re-runs the costs of
    the datasets that list it, not of all). Files of datasets no longer listed are removed and an
    unchanged file keeps its mtime. Returns the written paths (sorted by dataset)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [write_if_changed(out / f"{dataset}.yaml", dump({run: run_params(params, run) for run in runs}))
               for dataset, runs in sorted(lookup(params, "benchmark").items())]
    return remove_unlisted(out, written, "*.yaml")


def write_run_params(params: dict, out: Path) -> list[Path]:
    """``<out>/<run>.yaml`` for every run of ``params["methods"]``; ``*.yaml`` of runs no longer
    listed are removed. Returns the written paths (sorted by run)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [write_if_changed(out / f"{run}.yaml", dump(run_params(params, run)))
               for run in sorted(lookup(params, "methods"))]
    return remove_unlisted(out, written, "*.yaml")
