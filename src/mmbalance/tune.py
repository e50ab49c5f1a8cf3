"""Equal-budget, validation-only hyper-parameter search (the ``tune-<dataset>`` stages).

Rebalancing methods are often compared with baselines nobody tuned. Here every run gets the
same number of trials (``tune.budget``) over its own search space: ``tune.space.common`` (the
learning rate, for every run) plus ``tune.space.<run>`` (or ``tune.space.<method>`` for a
variant run) with the method's own knobs. Concat has no knobs, so its trials differ in the
common keys only, but it gets the same number of them.

A trial is scored on the **validation** split alone: the mean over ``tune.trial_seeds`` of the
validation accuracy at the epoch the loop selects on validation (``fit`` returns that epoch's
``val`` metrics). Trials never see the test split: the loop evaluates a ``test`` split every
epoch, so a trial is handed the validation split in its place (the test clips are not even
passed to it). The best trial wins (ties: lower mean validation loss, then lower index); a
trial whose training diverges (non-finite loss or gradient) scores nothing and cannot win.
The selected configuration is then trained with the benchmark's ``seeds`` by
:func:`mmbalance.train.run.run`, so the outputs are the train stage's (``results.json``,
``metrics.json``, ``curves.json``, ``predictions/``), plus ``trials.json``.

Sampling is deterministic: trial ``i`` of run ``r`` on dataset ``d`` draws from a NumPy
generator seeded by a SHA-256 of ``(tune.seed, d, r, i)``, so adding trials or runs leaves the
other trials' values unchanged. Space specs (one per key)::

    {log_uniform: [lo, hi]}   exp(U(log lo, log hi)), 0 < lo <= hi
    {uniform: [lo, hi]}       U(lo, hi)
    {int_uniform: [lo, hi]}   an integer in lo..hi, both ends included
    {choice: [a, b, ...]}     one of the listed values, equally likely

Keys: ``train.<key>`` sets the train block, ``model.<key>`` the model block, anything else
(optionally written ``method.<key>``) the method's block; dots reach into nested blocks
(``scales.audio``). A key must already exist in its block, so a typo fails loudly. Where a
method block holds ``<key>_by_dataset`` (ARL's ``T_by_dataset``) the run's dataset entry is
dropped, or the sampled value would be silently overridden.

Parallel runs on the DVC queue (``python -m mmbalance.tune queue|collect``, see README,
*Equal-budget tuning*): each tune stage is queued as its own experiment; ``collect`` copies every
finished experiment's stage outputs out of its git commit into the workspace and merges the
stage's ``dvc.lock`` entry, so that ``dvc repro`` then finds the stage up to date.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPEC_KINDS = ("log_uniform", "uniform", "int_uniform", "choice")
BLOCKS = ("train", "model", "method")
SELECTION = ("mean validation accuracy over tune.trial_seeds at the validation-selected epoch; "
             "ties: lower mean validation loss, then lower trial index")


# --------------------------------------------------------------------------------------------
# Sampling


def trial_rng(seed: int, dataset: str, run: str, index: int) -> np.random.Generator:
    """The generator of one trial, seeded by a stable hash (not Python's salted ``hash()``)."""
    key = json.dumps([int(seed), str(dataset), str(run), int(index)]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:16], "big"))


def check_spec(key: str, spec) -> tuple[str, list]:
    """``spec`` → (kind, arguments); a malformed spec raises ``ValueError`` naming ``key``."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SPEC_KINDS:
        raise ValueError(f"tune.space key {key!r}: expected one of {{{', '.join(SPEC_KINDS)}}}: [...], got {spec!r}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not args:
        raise ValueError(f"tune.space key {key!r}: {kind} needs a non-empty list, got {args!r}")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ValueError(f"tune.space key {key!r}: {kind} needs [low, high] numbers, got {args!r}")
        lo, hi = args
        if lo > hi:
            raise ValueError(f"tune.space key {key!r}: {kind} low {lo} > high {hi}")
        if kind == "log_uniform" and lo <= 0:
            raise ValueError(f"tune.space key {key!r}: log_uniform needs 0 < low, got {lo}")
        if kind == "int_uniform" and (int(lo) != lo or int(hi) != hi):
            raise ValueError(f"tune.space key {key!r}: int_uniform needs integer bounds, got {args!r}")
    return kind, args


def sample_value(key: str, spec, rng: np.random.Generator):
    """One draw of ``spec`` (a plain Python value, so it round-trips through JSON and YAML)."""
    kind, args = check_spec(key, spec)
    if kind == "choice":
        return copy.deepcopy(args[int(rng.integers(len(args)))])
    lo, hi = args
    if kind == "int_uniform":
        return int(rng.integers(int(lo), int(hi) + 1))
    if kind == "log_uniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def run_space(space: Mapping, run: str, method: str) -> dict:
    """The search space of one run: ``common`` updated by ``space.<run>`` (else ``space.<method>``:
    a variant run shares its method's knobs). Every spec is checked."""
    own = space.get(run) if run in space else space.get(method)
    merged = {**(space.get("common") or {}), **(own or {})}
    for key, spec in merged.items():
        check_spec(key, spec)
    return merged


def sample_trials(space: Mapping, budget: int, seed: int, dataset: str, run: str) -> list[dict]:
    """``budget`` trials of a run's space (keys drawn in sorted order): [{key: value}, ...]."""
    if int(budget) < 1:
        raise ValueError(f"tune.budget must be at least 1, got {budget}")
    out = []
    for i in range(int(budget)):
        rng = trial_rng(seed, dataset, run, i)
        out.append({key: sample_value(key, space[key], rng) for key in sorted(space)})
    return out


# --------------------------------------------------------------------------------------------
# Applying a trial


def _target(key: str) -> tuple[str, list[str]]:
    parts = key.split(".")
    if parts[0] in BLOCKS and len(parts) > 1:
        return parts[0], parts[1:]
    return "method", parts


def _set(block: dict, path: list[str], value, key: str, name: str) -> None:
    node = block
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            raise KeyError(f"tune.space key {key!r}: no block {part!r} in the {name} params")
        node = node[part]
    if path[-1] not in node:
        raise KeyError(f"tune.space key {key!r}: the {name} params have no {path[-1]!r} "
                       f"(known: {', '.join(sorted(node)) or 'none'})")
    node[path[-1]] = value


def _drop_dataset_override(block: dict, path: list[str], dataset: str) -> None:
    """Remove ``<top>_by_dataset.<dataset>`` (or the sampled leaf inside it), which would override the value."""
    table = block.get(f"{path[0]}_by_dataset")
    if not isinstance(table, dict) or dataset not in table:
        return
    table = block[f"{path[0]}_by_dataset"] = dict(table)
    if len(path) == 1 or not isinstance(table[dataset], dict):
        del table[dataset]
        return
    node = table[dataset] = copy.deepcopy(table[dataset])
    for part in path[1:-1]:
        if not isinstance(node.get(part), dict):
            return
        node = node[part]
    node.pop(path[-1], None)


def apply_trial(values: Mapping, method_cfg: dict, model_cfg: dict, train_cfg: dict,
                dataset: str | None = None) -> tuple[dict, dict, dict]:
    """Copies of (method, model, train) params with a trial's sampled values set."""
    blocks = {"method": copy.deepcopy(method_cfg), "model": copy.deepcopy(model_cfg), "train": copy.deepcopy(train_cfg)}
    for key, value in values.items():
        name, path = _target(key)
        _set(blocks[name], path, value, key, name)
        if name == "method" and dataset is not None:
            _drop_dataset_override(blocks[name], path, dataset)
    return blocks["method"], blocks["model"], blocks["train"]


# --------------------------------------------------------------------------------------------
# Scoring and selection


def trial_score(per_seed: Mapping[str, Mapping]) -> dict:
    """Score of one trial from its per-seed ``fit`` results (only their ``val`` entries are read):
    mean validation accuracy and loss at the validation-selected epoch."""
    vals = [r.get("val") for r in per_seed.values()]
    if not vals or any(v is None for v in vals):
        raise ValueError("a trial result has no validation metrics: tuning needs a validation split")
    return {"score": float(np.mean([v["acc"] for v in vals])), "val_loss": float(np.mean([v["loss"] for v in vals]))}


def _key(trial: Mapping) -> tuple:
    loss = trial.get("val_loss")
    loss = float("inf") if loss is None or not math.isfinite(loss) else float(loss)
    return -float(trial["score"]), loss, int(trial["index"])


def select_trial(trials: Sequence[Mapping]) -> int:
    """Index of the best trial: highest ``score`` (validation accuracy), then the lower
    ``val_loss``, then the lower index. Failed trials (``score`` None) never win. No other field
    (test metrics included) is read."""
    scored = [t for t in trials if t.get("score") is not None and math.isfinite(t["score"])]
    if not scored:
        raise RuntimeError("every tuning trial failed: nothing to select")
    return int(min(scored, key=_key)["index"])


# --------------------------------------------------------------------------------------------
# The driver


@dataclass
class _TrialJob:
    """What one (trial, seed) training needs; forked workers share it (and the loaded splits)."""

    info: dict
    splits: dict
    method: str
    method_cfg: dict
    model_cfg: dict
    train_cfg: dict
    dataset: str
    trials: list

    def run(self, index: int, seed: int) -> dict:
        from mmbalance.train.loop import NonFiniteError
        from mmbalance.train.run import train_seed

        method_cfg, model_cfg, train_cfg = apply_trial(self.trials[index], self.method_cfg, self.model_cfg, self.train_cfg,
                                                       self.dataset)
        try:
            res = train_seed(self.info, self.splits, self.method, method_cfg, model_cfg, train_cfg, seed)
        except NonFiniteError as err:  # e.g. a learning rate at the top of its range diverges
            return {"error": str(err)}
        val = {k: float(res["val"][k]) for k in ("acc", "loss")}
        return {"val": val, "best_epoch": int(res["best_epoch"]), "wall_s": res["wall_s"]}


_JOB: _TrialJob | None = None  # the job forked workers run (set only around the pool)


def _run_job(args: tuple[int, int]) -> dict:
    import torch

    torch.set_num_threads(int(_JOB.train_cfg.get("num_threads", 2)))
    return _JOB.run(*args)


def trial_splits(splits: Mapping) -> dict:
    """The splits a trial trains on: train, and validation also in the place of test."""
    if "val" not in splits:
        raise ValueError("tuning needs a validation split (the shards have none)")
    return {"train": splits["train"], "val": splits["val"], "test": splits["val"]}


def run_trials(job: _TrialJob, trial_seeds: Sequence[int], workers: int) -> list[dict]:
    """Train every (trial, seed) pair, ``workers`` at a time; one record per trial."""
    global _JOB
    pairs = [(i, int(s)) for i in range(len(job.trials)) for s in trial_seeds]
    if workers > 1:
        # Independent trainings that each seed their own RNGs: the numbers equal a sequential run's.
        _JOB = job
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                outs = pool.map(_run_job, pairs, chunksize=1)
        finally:
            _JOB = None
    else:
        outs = [job.run(*p) for p in pairs]
    per_trial: dict[int, dict] = {}
    for (i, s), out in zip(pairs, outs):
        per_trial.setdefault(i, {})[str(s)] = out
    records = []
    for i, values in enumerate(job.trials):
        seeds = per_trial[i]
        rec = {"index": i, "params": values, "seeds": seeds, "score": None, "val_loss": None}
        errors = [r["error"] for r in seeds.values() if "error" in r]
        if errors:
            rec["error"] = errors[0]
        else:
            rec.update(trial_score(seeds))
        records.append(rec)
    return records


def tune_run(shard_dir: Path, out_dir: Path, dataset: str, run_name: str, params: Mapping,
             live: Path | None = None) -> dict:
    """Tune one run on one dataset and retrain the selected configuration with ``params['seeds']``.

    Reads params ``profile``, ``seeds``, ``train``, ``model``, ``methods.<run>`` and ``tune``'s
    ``budget``, ``seed``, ``trial_seeds`` and ``space``. Writes ``out_dir/trials.json`` and the
    train stage's outputs (DVCLive logs of the retrained seeds under ``live``); returns the trials
    record."""
    from mmbalance.params import lookup
    from mmbalance.shards import read_index
    from mmbalance.train import runtime
    from mmbalance.train.run import load_splits, run, run_settings, seed_workers

    import torch

    tune = lookup(params, "tune")
    method, method_cfg, model_cfg, train_cfg = run_settings(params, run_name, dataset)
    space = run_space(tune.get("space") or {}, run_name, method)
    budget, seed = int(tune["budget"]), int(tune.get("seed", 0))
    trial_seeds = [int(s) for s in (tune.get("trial_seeds") or [0])]
    trials = sample_trials(space, budget, seed, dataset, run_name)
    for values in trials:  # a bad key fails before any training
        apply_trial(values, method_cfg, model_cfg, train_cfg, dataset)

    torch.set_num_threads(int(train_cfg.get("num_threads", 2)))
    start = time.perf_counter()
    info = read_index(shard_dir)
    splits = trial_splits(load_splits(shard_dir, info, model_cfg, train_cfg))
    job = _TrialJob(info, splits, method, method_cfg, model_cfg, train_cfg, dataset, trials)
    workers = seed_workers(train_cfg, runtime.resolve(train_cfg), budget * len(trial_seeds))
    records = run_trials(job, trial_seeds, workers)
    del job, splits
    chosen = select_trial(records)
    record = {"dataset": dataset, "run": run_name, "method": method, "budget": budget, "seed": seed,
              "trial_seeds": trial_seeds, "space": space, "selection": SELECTION, "selected": chosen,
              "trials": records, "tuning_wall_s": round(time.perf_counter() - start, 3),
              "retrain_seeds": [int(s) for s in lookup(params, "seeds")]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "trials.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    best_method, best_model, best_train = apply_trial(trials[chosen], method_cfg, model_cfg, train_cfg, dataset)
    results = run(shard_dir, out_dir, dataset, method, best_method, best_model, best_train, lookup(params, "seeds"),
                  lookup(params, "profile"), run_name=run_name, live=live)
    # results.json says it is a tuned run and with which values (the report reads trials.json too)
    results["tune"] = {"budget": budget, "selected": chosen, "params": trials[chosen], "val_score": records[chosen]["score"]}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return record


# --------------------------------------------------------------------------------------------
# The DVC queue: one experiment per tune stage, then collect their outputs


def stage_name(dataset: str, run: str) -> str:
    """The name DVC gives a tune stage (matrix over dataset and run in dvc.yaml)."""
    return f"tune-{dataset}@{dataset}-{run}"


def experiment_name(dataset: str, run: str) -> str:
    """The experiment a queued tune stage runs as (a valid git ref component)."""
    return f"tune-{dataset}-{run}"


def queue(dataset: str, runs: Sequence[str], jobs: int, cwd: Path | None = None, start: bool = True) -> list[str]:
    """Queue each run's tune stage as its own experiment (named :func:`experiment_name`; an
    earlier experiment of that name on this commit is replaced) and start ``jobs`` workers."""
    from mmbalance.queue import queue_targets  # the queue commands' helpers stay out of the tune stage's imports

    return queue_targets(_named_targets(dataset, runs), jobs, cwd, start)


def _named_targets(dataset: str, runs: Sequence[str]) -> dict[str, str]:
    """Experiment name → tune stage of each run."""
    return {experiment_name(dataset, run): stage_name(dataset, run) for run in runs}


def _stage_outs(lock: Mapping, stage: str) -> list[str]:
    entry = (lock.get("stages") or {}).get(stage)
    if entry is None:
        raise KeyError(f"stage {stage!r} is not in the experiment's dvc.lock")
    return [o["path"] for o in entry.get("outs") or []]


def collect(dataset: str, runs: Sequence[str], cwd: Path | None = None, lock: bool = True) -> dict[str, str]:
    """Bring each finished tune experiment's stage outputs into the workspace (read from the
    experiment's commit: ``cache: false`` outputs are committed there) and, with ``lock``, merge
    that stage's ``dvc.lock`` entry into the workspace's and check out its cached outputs, if
    any, from the DVC cache the queue's workers share. Returns run → experiment commit for the
    runs collected; runs without a finished experiment are skipped (and reported by the CLI)."""
    from dvc.utils.serialize import loads_yaml, modify_yaml

    from mmbalance.queue import copy_outputs, experiment_revs, run_cmd

    root = Path(cwd or ".")
    revs = experiment_revs(cwd)
    done = {}
    for run in runs:
        sha = revs.get(experiment_name(dataset, run))
        if sha is None:
            continue
        exp_lock = loads_yaml(run_cmd(["git", "show", f"{sha}:dvc.lock"], cwd))
        stage = stage_name(dataset, run)
        copy_outputs(sha, _stage_outs(exp_lock, stage), cwd)
        if lock:
            with modify_yaml(str(root / "dvc.lock")) as data:
                data.setdefault("schema", exp_lock.get("schema", "2.0"))
                data.setdefault("stages", {})[stage] = exp_lock["stages"][stage]
        done[run] = sha
    if lock and done:
        run_cmd(["dvc", "checkout", *(stage_name(dataset, run) for run in done)], cwd)
    return done


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbalance.tune", description="Run the tune stages on the DVC queue.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("queue", "queue each tune stage as an experiment and start the workers"),
                       ("collect", "copy finished tune experiments' outputs (and dvc.lock entries) into the workspace")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dataset", required=True)
        p.add_argument("--runs", nargs="*", default=None, help="default: params tune.runs.<dataset>")
        p.add_argument("--params", type=Path, default=Path("params.yaml"))
    q = sub.choices["queue"]
    q.add_argument("-j", "--jobs", type=int, default=2, help="queue workers (dvc queue start -j)")
    q.add_argument("--wait", action="store_true", help="wait for the queue to finish, then collect")
    sub.choices["collect"].add_argument("--no-lock", action="store_true", help="leave dvc.lock as it is")
    args = ap.parse_args(argv)

    from mmbalance.params import load_params, lookup
    from mmbalance.queue import finish, start

    runs = args.runs or list(lookup(load_params(args.params), f"tune.runs.{args.dataset}"))
    if args.command == "queue" and not start(_named_targets(args.dataset, runs), args.jobs,
                                             ["params.yaml", "dvc.yaml", "dvc.lock"], args.wait):
        return
    done = collect(args.dataset, runs, lock=not getattr(args, "no_lock", False))
    finish(f"collected {len(done)} tuned runs of {args.dataset}: {', '.join(done) or 'none'}",
           [experiment_name(args.dataset, r) for r in runs if r not in done])


if __name__ == "__main__":
    main()
