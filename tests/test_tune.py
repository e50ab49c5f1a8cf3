"""Equal-budget tuning (``mmbalance.tune``): deterministic sampling, every space spec, applying a
trial, validation-only selection, the same budget for every run, one tiny tune run end to end,
and (slow) the tune stages on the DVC queue with ``collect``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmbalance import tune
from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params, resolve_run

from conftest import tiny_queue_repo

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")
SPACE = {"common": {"train.lr": {"log_uniform": [0.003, 0.03]}},
         "ogm_ge": {"alpha": {"uniform": [0.1, 1.0]}},
         "arl": {"gamma": {"choice": [1.0, 2.0, 4.0]}, "T": {"choice": [2.0, 8.0]}},
         "gmm_al": {"warmup_epochs": {"int_uniform": [1, 3]}}}


# ---- sampling ---------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_per_trial():
    space = tune.run_space(SPACE, "arl", "arl")
    first = tune.sample_trials(space, 6, 0, "cremad", "arl")
    assert first == tune.sample_trials(space, 6, 0, "cremad", "arl")
    # a larger budget keeps the first trials: each trial has its own generator
    assert tune.sample_trials(space, 9, 0, "cremad", "arl")[:6] == first
    assert first != tune.sample_trials(space, 6, 1, "cremad", "arl")  # another tune.seed
    assert first != tune.sample_trials(space, 6, 0, "ave", "arl")  # another dataset
    assert len({json.dumps(t, sort_keys=True) for t in first}) > 1


def test_sampling_is_stable_across_processes():
    """The seed is a SHA-256, not Python's salted hash(): another interpreter draws the same values."""
    code = ("import json; from mmbalance import tune; "
            f"print(json.dumps(tune.sample_trials(tune.run_space({SPACE!r}, 'ogm_ge', 'ogm_ge'), 3, 0, 'cremad', 'ogm_ge')))")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(out) == tune.sample_trials(tune.run_space(SPACE, "ogm_ge", "ogm_ge"), 3, 0, "cremad", "ogm_ge")


def test_every_spec_kind():
    rng = np.random.default_rng(0)
    logs = [tune.sample_value("k", {"log_uniform": [0.001, 0.1]}, rng) for _ in range(400)]
    assert all(0.001 <= v <= 0.1 and isinstance(v, float) for v in logs)
    assert np.median(np.log10(logs)) == pytest.approx(-2.0, abs=0.2)  # uniform in log space
    unif = [tune.sample_value("k", {"uniform": [0.2, 0.4]}, rng) for _ in range(400)]
    assert all(0.2 <= v <= 0.4 for v in unif) and np.mean(unif) == pytest.approx(0.3, abs=0.02)
    ints = [tune.sample_value("k", {"int_uniform": [2, 4]}, rng) for _ in range(300)]
    assert set(ints) == {2, 3, 4} and all(type(v) is int for v in ints)  # both ends included
    picks = [tune.sample_value("k", {"choice": ["a", None, {"x": 1}]}, rng) for _ in range(300)]
    assert {json.dumps(p) for p in picks} == {'"a"', "null", '{"x": 1}'}
    assert tune.sample_value("k", {"uniform": [0.5, 0.5]}, rng) == 0.5


@pytest.mark.parametrize("spec", [{"uniform": [1.0]}, {"uniform": [2.0, 1.0]}, {"log_uniform": [0.0, 1.0]},
                                  {"int_uniform": [0.5, 2]}, {"choice": []}, {"normal": [0, 1]},
                                  {"uniform": [0, 1], "choice": [1]}, 0.1])
def test_bad_spec_names_the_key(spec):
    with pytest.raises(ValueError, match="lr"):
        tune.run_space({"common": {"train.lr": spec}}, "concat", "concat")


def test_run_space_common_plus_own_and_variant_falls_back_to_method():
    assert set(tune.run_space(SPACE, "concat", "concat")) == {"train.lr"}  # Concat: the common space only
    assert set(tune.run_space(SPACE, "ogm_ge", "ogm_ge")) == {"train.lr", "alpha"}
    assert set(tune.run_space(SPACE, "arl__mmtm", "arl")) == {"train.lr", "gamma", "T"}


# ---- applying a trial ---------------------------------------------------------------------------


def test_apply_trial_sets_each_block_and_leaves_the_inputs_alone():
    method, method_cfg, model_cfg = resolve_run(PARAMS, "arl")
    train_cfg = dict(PARAMS["train"])
    before = json.dumps([method_cfg, model_cfg, train_cfg], sort_keys=True)
    m, mo, t = tune.apply_trial({"train.lr": 0.02, "gamma": 2.0, "T": 16.0, "model.fusion": "sum"},
                                method_cfg, model_cfg, train_cfg, "cremad")
    assert (t["lr"], m["gamma"], m["T"], mo["fusion"]) == (0.02, 2.0, 16.0, "sum")
    # T_by_dataset.cremad (8) would override the sampled T: the dataset's entry is dropped
    assert "cremad" not in m["T_by_dataset"]
    assert json.dumps([method_cfg, model_cfg, train_cfg], sort_keys=True) == before


def test_sampled_T_reaches_arl_on_cremad():
    from mmbalance.methods import MethodContext, build_method

    _, method_cfg, model_cfg = resolve_run(PARAMS, "arl")
    m, _, _ = tune.apply_trial({"T": 16.0}, method_cfg, model_cfg, dict(PARAMS["train"]), "cremad")
    method = build_method("arl", m, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2, dataset="cremad"))
    assert method.T == 16.0


def test_apply_trial_unknown_key_fails():
    _, method_cfg, model_cfg = resolve_run(PARAMS, "ogm_ge")
    with pytest.raises(KeyError, match="alhpa"):
        tune.apply_trial({"alhpa": 0.3}, method_cfg, model_cfg, dict(PARAMS["train"]))
    with pytest.raises(KeyError, match="train.lrr"):
        tune.apply_trial({"train.lrr": 0.3}, method_cfg, model_cfg, dict(PARAMS["train"]))


def test_params_space_applies_to_every_default_run():
    """Every key of the committed space exists in its run's blocks (a typo would fail the stage)."""
    block = PARAMS["tune"]
    for dataset, runs in block["runs"].items():
        for run in runs:
            method, method_cfg, model_cfg = resolve_run(PARAMS, run)
            space = tune.run_space(block["space"], run, method)
            for values in tune.sample_trials(space, block["budget"], block["seed"], dataset, run):
                tune.apply_trial(values, method_cfg, model_cfg, dict(PARAMS["train"]), dataset)


# ---- selection and budget -----------------------------------------------------------------------


def _trial(i, val_acc, val_loss, test_acc):
    return {"index": i, "params": {"train.lr": 0.01 * (i + 1)}, "score": val_acc, "val_loss": val_loss,
            "test": {"acc": test_acc}, "seeds": {"0": {"val": {"acc": val_acc, "loss": val_loss}, "test": {"acc": test_acc}}}}


def test_selection_uses_validation_only():
    trials = [_trial(0, 0.60, 1.0, 0.95), _trial(1, 0.80, 1.0, 0.40), _trial(2, 0.70, 1.0, 0.99)]
    assert tune.select_trial(trials) == 1  # best validation, worst test
    # the score is computed from the val entries alone
    per_seed = {"0": {"val": {"acc": 0.5, "loss": 2.0}, "test": {"acc": 1.0, "loss": 0.0}},
                "1": {"val": {"acc": 0.7, "loss": 1.0}, "test": {"acc": 0.0, "loss": 9.0}}}
    assert tune.trial_score(per_seed) == {"score": pytest.approx(0.6), "val_loss": pytest.approx(1.5)}
    with pytest.raises(ValueError, match="validation"):
        tune.trial_score({"0": {"val": None, "test": {"acc": 1.0}}})


def test_selection_ties_and_failures():
    assert tune.select_trial([_trial(0, 0.8, 0.9, 0), _trial(1, 0.8, 0.5, 0), _trial(2, 0.7, 0.1, 1)]) == 1
    assert tune.select_trial([_trial(0, 0.8, 0.5, 0), _trial(1, 0.8, 0.5, 1)]) == 0
    assert tune.select_trial([_trial(0, 0.8, float("nan"), 0), _trial(1, 0.8, 3.0, 0)]) == 1
    failed = {"index": 0, "params": {}, "score": None, "val_loss": None, "error": "non-finite loss"}
    assert tune.select_trial([failed, _trial(1, 0.1, 3.0, 0)]) == 1
    with pytest.raises(RuntimeError, match="failed"):
        tune.select_trial([failed])


def test_trials_never_see_the_test_split():
    splits = {"train": object(), "val": object(), "test": object()}
    got = tune.trial_splits(splits)
    assert got["test"] is splits["val"] and splits["test"] not in got.values()
    with pytest.raises(ValueError, match="validation"):
        tune.trial_splits({"train": object(), "test": object()})


def test_equal_budget_across_runs(full_profile):
    """Every run of the full profile's tuning (the default tunes none) gets the same budget."""
    params = full_profile[0]
    block = params["tune"]
    counts = {}
    for dataset, runs in block["runs"].items():
        assert "concat" in runs, "Concat is tuned too"
        for run in runs:
            method = resolve_run(params, run)[0]
            counts[run] = len(tune.sample_trials(tune.run_space(block["space"], run, method), block["budget"],
                                                 block["seed"], dataset, run))
    assert set(counts.values()) == {int(block["budget"])}


# ---- end to end on tiny data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Mini CREMA-D (36 clips, a quarter of train held out for validation), tiny model, 1 epoch."""
    base = tmp_path_factory.mktemp("tune")
    get_generator("cremad")(base / "raw", clips_per_class=6, seed=0, show_progress=False)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["prepare"].update(workers=1, shard_max_count=50)
    p["datasets"]["cremad"]["frame_size"] = 16
    p["datasets"]["cremad"]["split"].update(val_fraction=0.25, test_fraction=0.25)
    p["seeds"] = [0]
    p["train"].update(epochs=1, batch_size=8, num_threads=1, seed_workers=2)
    p["model"]["encoders"]["spectrogram"].update(channels=[4, 8], input_size=[16, 20])
    p["model"]["encoders"]["frames"].update(channels=[4, 8])
    p["tune"].update(budget=2, trial_seeds=[0])
    (base / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "cremad", "--root",
                           str(base / "raw"), "--out", str(base / "shards"), "--params", str(base / "params.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base


def test_tune_run_end_to_end(tiny):
    params = load_params(tiny / "params.yaml")
    out = tiny / "tuned" / "ogm_ge"
    record = tune.tune_run(tiny / "shards", out, "cremad", "ogm_ge", params, live=tiny / "live")
    trials = json.loads((out / "trials.json").read_text())
    assert trials == json.loads(json.dumps(record))
    assert trials["budget"] == 2 and len(trials["trials"]) == 2 and trials["selected"] in (0, 1)
    assert set(trials["trials"][0]["params"]) == {"train.lr", "alpha"}
    assert all(0 <= t["score"] <= 1 for t in trials["trials"])
    # the train stage's outputs, readable by the same code
    results = json.loads((out / "results.json").read_text())
    assert results["run"] == "ogm_ge" and results["dataset"] == "cremad" and set(results["seeds"]) == {"0"}
    assert {"test", "val", "best_epoch"} <= set(results["seeds"]["0"])
    assert results["tune"]["params"] == trials["trials"][trials["selected"]]["params"]
    assert "acc" in json.loads((out / "metrics.json").read_text())
    assert (out / "predictions" / "seed0.npz").exists() and (tiny / "live" / "seed0").is_dir()
    assert set(json.loads((out / "curves.json").read_text())) == {"0"}
    from mmbalance.report.tables import load_results

    (summary,) = load_results([out / "results.json"])
    assert summary.run == "ogm_ge"


def test_parallel_trials_equal_sequential(tiny):
    """Trials forked side by side give the numbers of a sequential run (each seeds its own RNGs)."""
    from mmbalance.shards import read_index
    from mmbalance.train.run import load_splits

    params = load_params(tiny / "params.yaml")
    method, method_cfg, model_cfg = resolve_run(params, "concat")
    info = read_index(tiny / "shards")
    splits = tune.trial_splits(load_splits(tiny / "shards", info, model_cfg, params["train"]))
    trials = tune.sample_trials(tune.run_space(params["tune"]["space"], "concat", method), 2, 0, "cremad", "concat")
    job = tune._TrialJob(info, splits, method, method_cfg, model_cfg, params["train"], "cremad", trials)
    strip = lambda recs: [{k: v for k, v in r.items() if k != "seeds"} for r in recs]  # noqa: E731 (wall times differ)
    assert strip(tune.run_trials(job, [0], 1)) == strip(tune.run_trials(job, [0], 2))


# ---- the DVC queue ------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None, reason="dvc is not installed")
def test_queue_and_collect(tmp_path):
    """Two tune stages as queued experiments (2 workers), collected into the workspace with their
    dvc.lock entries: `dvc status` then finds them up to date."""
    keep = ("dataset-sources", "stage-params", "generate", "prepare", "run-params", "method-sources", "tune-cremad")
    env = tiny_queue_repo(tmp_path, keep, edit=lambda p: p["tune"].update(budget=2, runs={"cremad": ["concat", "moddrop"]}))
    try:
        out = _run([sys.executable, "-m", "mmbalance.tune", "queue", "--dataset", "cremad", "-j", "2", "--wait"],
                   tmp_path, env, timeout=400)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert "collected 2 tuned runs" in out, out
    for run in ("concat", "moddrop"):
        folder = tmp_path / "results" / "tuned" / "cremad" / run
        trials = json.loads((folder / "trials.json").read_text())
        assert trials["budget"] == 2 and len(trials["trials"]) == 2
        assert json.loads((folder / "results.json").read_text())["run"] == run
        assert (folder / "predictions" / "seed0.npz").exists() and (folder / "metrics.json").exists()
    status = _run(["dvc", "status", "tune-cremad"], tmp_path, env)
    assert "up to date" in status, status
