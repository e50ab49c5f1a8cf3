"""The run-params stage: each training run reads its own params file, split from params.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmbalance.params import load_params, lookup, resolve_run, scale_train
from mmbalance.run_params import SHARED_KEYS, dump, run_params, write_run_params
from mmbalance.train.run import for_dataset

ROOT = Path(__file__).resolve().parents[1]
RUN_PARAMS = "data/run_params"


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(ROOT / "params.yaml")


def _option(cmd: str, name: str) -> str:
    words = cmd.split()
    return words[words.index(name) + 1]


def test_a_run_file_by_hand():
    p = {"profile": "mini", "seeds": [0, 1], "train": {"lr": 0.01}, "model": {"fusion": "concat"},
         "methods": {"arl": {"gamma": 4.0}, "concat": {}}, "benchmark": {"cremad": ["arl"]}}
    assert run_params(p, "arl") == {"profile": "mini", "seeds": [0, 1], "train": {"lr": 0.01},
                                    "model": {"fusion": "concat"}, "methods": {"arl": {"gamma": 4.0}}}
    with pytest.raises(KeyError, match="methods.dr"):
        run_params(p, "dr")


def test_every_run_resolves_as_from_params_yaml(params, tmp_path):
    """What a training stage computes from its run's file equals what it computed from params.yaml:
    method, method block, model and (per dataset) train settings, in the same key order."""
    write_run_params(params, tmp_path)
    for run in params["methods"]:
        own = load_params(tmp_path / f"{run}.yaml")
        assert resolve_run(own, run) == resolve_run(params, run)
        assert list(resolve_run(own, run)[2]) == list(resolve_run(params, run)[2])  # build order
        for ds in params["benchmark"]:
            assert scale_train(own, run, for_dataset(lookup(own, "train"), ds)) == \
                scale_train(params, run, for_dataset(lookup(params, "train"), ds))
        assert (own["seeds"], own["profile"]) == (params["seeds"], params["profile"])


def test_files_of_removed_runs_go_and_unchanged_files_stay(params, tmp_path):
    write_run_params(params, tmp_path)
    (tmp_path / "gone.yaml").write_text("{}\n")
    kept = tmp_path / "concat.yaml"
    before = kept.stat().st_mtime_ns
    written = write_run_params(params, tmp_path)
    assert not (tmp_path / "gone.yaml").exists() and kept.stat().st_mtime_ns == before
    assert sorted(p.stem for p in written) == sorted(params["methods"])


def test_dump_round_trips_and_refuses_what_does_not():
    body = {"train": {"lr": 1e-05, "epochs": 20, "name": "1.0", "none": None}, "seeds": [0, 1]}
    assert yaml.safe_load(dump(body)) == body
    with pytest.raises(ValueError, match="round trip"):
        dump({"x": float("nan")})


def test_training_stages_read_their_run_file_and_declare_no_params(resolved_stages, full_profile):
    """Train and sweep stages (the full profile's: the default sweeps nothing): ``--params
    data/run_params/<run>.yaml``, a dependency on that file, no params dependency (DVC would
    parse params.yaml once per stage)."""
    found = 0
    for name, st in full_profile[1].items():
        if not name.startswith(("train-", "sweep-")):
            continue
        run = _option(st["cmd"], "--method" if name.startswith("train-") else "--run")
        assert _option(st["cmd"], "--params") == f"{RUN_PARAMS}/{run}.yaml", name
        assert f"{RUN_PARAMS}/{run}.yaml" in st["deps"] and st["params"] == [], name
        found += 1
    assert found > 400
    rp = resolved_stages["run-params"]
    assert sorted(rp["params"]) == sorted([*SHARED_KEYS, "methods", "encoder_sets", "benchmark"])
    assert f"--out {RUN_PARAMS}" in rp["cmd"]


def test_an_encoder_set_reaches_only_the_runs_that_pick_it():
    """``encoder_sets`` (top level) is copied into the file of a run with ``encoders: <name>``, and
    only that set: adding or editing a set leaves every other run's file unchanged."""
    from mmbalance.run_params import dump, run_params

    params = {"profile": "mini", "seeds": [0], "train": {"epochs": 1}, "model": {"encoders": {"frames": {"name": "tiny_cnn"}}},
              "methods": {"concat": None, "concat__swin": {"method": "concat", "encoders": "swin"}}}
    before = dump(run_params(params, "concat"))
    params["encoder_sets"] = {"swin": {"frames": {"name": "swin"}}, "other": {"frames": {"name": "x"}}}
    assert dump(run_params(params, "concat")) == before
    assert run_params(params, "concat__swin")["encoder_sets"] == {"swin": {"frames": {"name": "swin"}}}


def test_a_dataset_file_gathers_its_runs_and_changes_only_with_them(params, tmp_path):
    """datasets/<dataset>.yaml (the costs stage's dependency): each listed run's own file body; an
    edit of one run's block changes the files of the datasets that list it, no other."""
    from mmbalance.run_params import write_dataset_run_params

    written = write_dataset_run_params(params, tmp_path)
    assert sorted(p.stem for p in written) == sorted(params["benchmark"])
    for ds, runs in params["benchmark"].items():
        body = load_params(tmp_path / f"{ds}.yaml")
        assert list(body) == list(runs) and body[runs[0]] == run_params(params, runs[0])
    before = {p.name: p.read_text() for p in written}
    edited = {**params, "methods": {**params["methods"], "arl": {**params["methods"]["arl"], "gamma": 2.5}}}
    after = {p.name: p.read_text() for p in write_dataset_run_params(edited, tmp_path)}
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {f"{ds}.yaml" for ds, runs in params["benchmark"].items() if "arl" in runs} and changed
