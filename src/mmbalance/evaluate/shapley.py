"""Modality contribution: the Shapley value of each modality of a trained model on the test set.

The players are the model's modalities; the value of a coalition S is the test accuracy of the
method's prediction when every modality outside S is masked for every sample, with the same
masking as the missing-modality robustness (``robustness.accuracy_with_drops`` with drop
probability 1: the modality's features are set to 0 before the fusion). The empty coalition is
the model's prediction with *all* modalities masked (its fusion's bias alone), not chance, so
the values add up to the full model's accuracy minus that all-masked accuracy (efficiency).

For n modalities this takes the 2^n coalition accuracies (4 for two modalities, 8 for three):

    phi_i = sum over S ⊆ N \\ {i} of |S|! (n - |S| - 1)! / n! * (v(S ∪ {i}) - v(S)).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mmbalance.evaluate.robustness import (
    EvalInputs,
    accuracy_with_drops,
    encoded_split,
    eval_inputs,
    seed_checkpoints,
    trained_seeds,
)
from mmbalance.train.data import SplitData

EMPTY_SET = "all modalities masked (features set to 0 before the fusion)"


def coalitions(players: Sequence[str]) -> list[tuple[str, ...]]:
    """Every subset of ``players`` (in their order), from the empty one to all of them."""
    return [c for k in range(len(players) + 1) for c in itertools.combinations(players, k)]


def shapley_values(players: Sequence[str], value: Mapping[frozenset, float]) -> dict[str, float]:
    """Exact Shapley value of each player from the value of every coalition.

    ``value`` maps ``frozenset(coalition)`` → v(S) for all 2^n subsets of ``players`` (the
    empty set included). Raises KeyError naming a missing coalition.
    """
    n = len(players)
    missing = [sorted(c) for c in map(frozenset, coalitions(players)) if c not in value]
    if missing:
        raise KeyError(f"no value for coalitions {missing}")
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        out[p] = math.fsum(
            math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
            * (value[frozenset(s) | {p}] - value[frozenset(s)])
            for s in coalitions(others))
    return out


def coalition_accuracies(model, method, data: SplitData, batch_size: int = 256) -> dict[frozenset, float]:
    """Test accuracy for every coalition of the model's modalities, the others masked (the split
    encoded once for all of them: ``encoded_split``)."""
    mods, enc = list(model.modalities), encoded_split(model, data, batch_size)
    return {frozenset(c): accuracy_with_drops(model, method, data, {m: 1.0 for m in mods if m not in c}, 0, batch_size, enc)
            for c in coalitions(mods)}


def shapley_seed(model, method, data: SplitData, batch_size: int = 256) -> dict:
    """One trained model: ``{"coalitions": [{"present": [...], "acc": v}, ...], "shapley": {m: phi}}``."""
    mods = list(model.modalities)
    value = coalition_accuracies(model, method, data, batch_size)
    return {"coalitions": [{"present": list(c), "acc": value[frozenset(c)]} for c in coalitions(mods)],
            "shapley": shapley_values(mods, value)}


def shapley_run(model_dir: Path, info: dict, data: SplitData | EvalInputs, batch_size: int = 256) -> dict:
    """Every seed's model of one run → ``{"method", "modalities", "seeds": {k: shapley_seed}, "wall_s"}``."""
    start, inputs = time.perf_counter(), eval_inputs(data, info)
    out: dict = {"seeds": {}}
    for k, method, model, ckpt in trained_seeds(model_dir, info):
        out.update(method=ckpt["method"], modalities=list(model.modalities))
        out["seeds"][str(k)] = shapley_seed(model, method, inputs.for_model(ckpt["model_cfg"]), batch_size)
    out["wall_s"] = round(time.perf_counter() - start, 3)
    return out


def shapley_runs(model_dirs: Iterable[Path], info: dict, data: SplitData | EvalInputs, batch_size: int = 256,
                 log=print) -> dict:
    """Shapley values of every run folder in ``model_dirs``. A folder without ``seed<k>.pt`` files
    is listed in ``missing``; a run whose saved method cannot predict from its reloaded model
    (it raises RuntimeError/ValueError, e.g. it needs training-time state) in ``skipped`` with
    the reason; both are logged. Returns ``{"empty_set", "runs", "missing", "skipped"}``."""
    runs, missing, skipped, data = {}, [], {}, eval_inputs(data, info)
    for d in sorted(Path(d) for d in model_dirs):
        if not seed_checkpoints(d):
            log(f"shapley: no seed<k>.pt model files in {d}; skipped")
            missing.append(d.name)
            continue
        try:
            runs[d.name] = shapley_run(d, info, data, batch_size)
        except (RuntimeError, ValueError) as e:
            log(f"shapley: {d}: skipped ({e})")
            skipped[d.name] = str(e)
    return {"empty_set": EMPTY_SET, "runs": runs, "missing": missing, "skipped": skipped}
