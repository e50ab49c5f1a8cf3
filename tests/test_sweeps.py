"""Hyper-parameter sensitivity sweeps (``mmbalance.sweeps``, the ``sweep-<name>`` stages): the
point list expands deterministically from params, dvc.yaml generates exactly those stages with the
train stage's narrow deps, a point's value lands in the right params block, and a two-point sweep
trains on tiny data and is drawn as ``sensitivity_<run>.png``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params
from mmbalance.profiles import deep_merge
from mmbalance.sweeps import Point, check_sweep, default_value, expand_points, parse_value, point_config, run_point, value_text

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")
SWEEPS = {"b": {"run": "opm", "param": "lam", "values": [0.5, 2.0], "datasets": ["cremad", "ave"], "default": 0.5},
          "a": {"run": "iprm", "param": "alpha", "values": [0.9, 0.1], "datasets": ["cremad"]}}


# ---- the point list ---------------------------------------------------------------------------


def test_points_expand_in_declaration_order():
    """Sweeps as declared, then datasets, then values as listed (not sorted): dvc.yaml's matrix order."""
    points = expand_points(SWEEPS)
    assert points == [Point("b", "cremad", "opm", "lam", 0.5), Point("b", "cremad", "opm", "lam", 2.0),
                      Point("b", "ave", "opm", "lam", 0.5), Point("b", "ave", "opm", "lam", 2.0),
                      Point("a", "cremad", "iprm", "alpha", 0.9), Point("a", "cremad", "iprm", "alpha", 0.1)]
    assert expand_points(SWEEPS) == points
    assert [p.folder for p in points[:2]] == ["lam=0.5", "lam=2.0"]
    assert points[1].stage == "sweep-b@opm-lam-cremad-2.0"


def test_committed_sweeps_mini_and_full():
    """Mini: the four sweeps declared, none run (no dataset); their committed points are three
    values each on CREMA-D (IPRM α, OPM q_base and λ, OGM α); the full profile's grids."""
    assert expand_points(PARAMS["sweeps"]) == []
    assert [b["values"] for b in PARAMS["sweeps"].values()] == [[0.1, 0.5, 0.9], [0.1, 0.5, 0.9], [0.1, 0.5, 2.0], [0.1, 0.8, 2.0]]
    committed = sorted(p.relative_to(ROOT / "results" / "sweeps").parent.as_posix()
                       for p in (ROOT / "results" / "sweeps").glob("*/*/*/results.json"))
    assert len(committed) == 12 and {c.split("/")[0] for c in committed} == {"cremad"}
    assert [c for c in committed if "/iprm/" in c] == ["cremad/iprm/alpha=0.1", "cremad/iprm/alpha=0.5", "cremad/iprm/alpha=0.9"]
    full = deep_merge(PARAMS, yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text()))
    points = expand_points(full["sweeps"])
    assert len(points) == 9 * 5 + (9 + 7 + 8) * 3
    assert [p.value for p in points if p.run == "iprm" and p.dataset == "sarcasm"] == [k / 10 for k in range(1, 10)]
    assert default_value(full["sweeps"]["iprm_alpha"], "sarcasm") == 0.7
    assert default_value(full["sweeps"]["iprm_alpha"], "kinetics_sounds") == 0.8


@pytest.mark.parametrize("block, match", [
    ({"run": "opm", "param": "lam", "values": [0.5]}, "missing datasets"),
    ({"run": "opm", "param": "lam", "values": [], "datasets": ["cremad"]}, "values: expected a non-empty list"),
    ({"run": "opm", "param": "lam", "values": [0.5], "datasets": "cremad"}, "datasets: expected a list"),
    ({"run": "opm", "param": "lam", "values": [0.5, 0.5], "datasets": ["cremad"]}, "repeated"),
    ({"run": "", "param": "lam", "values": [0.5], "datasets": ["cremad"]}, "run: expected a name"),
    ({"run": "opm", "param": "lam", "values": [[0.5]], "datasets": ["cremad"]}, "scalars only"),
])
def test_bad_sweep_names_the_key(block, match):
    with pytest.raises(ValueError, match=match) as err:
        check_sweep("opm_lam", block)
    assert "sweeps.opm_lam" in str(err.value)


def test_two_sweeps_may_not_train_the_same_point():
    twice = {"x": SWEEPS["b"], "y": {**SWEEPS["b"], "values": [2.0], "datasets": ["ave"]}}
    with pytest.raises(ValueError, match="sweeps.y and sweeps.x both train ave/opm/lam=2.0"):
        expand_points(twice)


def test_values_round_trip_through_the_command_line():
    """The stage's --value is DVC's text of the matrix item; parsed back it is the same number."""
    for value in (0.1, 0.25, 1.0, 2, True):
        assert parse_value(value_text(value)) == value and type(parse_value(value_text(value))) is type(value)
    assert value_text(1.0) == "1.0" and value_text(False) == "false"


def test_default_value():
    assert default_value({"default": 0.5}, "cremad") == 0.5
    assert default_value({"default": {"cremad": 0.8}}, "sarcasm") is None
    assert default_value({}, "cremad") is None
    with pytest.raises(ValueError, match="not a number"):
        default_value({"run": "iprm", "param": "alpha", "default": "auto"}, "cremad")


# ---- applying a point -------------------------------------------------------------------------


def test_point_override_lands_in_its_block():
    """Hand-checked against params.yaml: OPM λ in the method block (q_base stays 0.5); train.lr in
    train; model.fusion in model; the other blocks as the train stage resolves them."""
    method, m, mo, t = point_config(PARAMS, "cremad", "opm", "lam", 2.0)
    assert method == "opm" and m["lam"] == 2.0 and m["q_base"] == 0.5
    assert t == PARAMS["train"] and mo["fusion"] == "concat"
    _, m, _, t = point_config(PARAMS, "cremad", "ogm", "train.lr", 0.003)
    assert t["lr"] == 0.003 and m["alpha"] == 0.8 and PARAMS["train"]["lr"] == 0.01
    _, _, mo, _ = point_config(PARAMS, "cremad", "concat", "model.fusion", "sum")
    assert mo["fusion"] == "sum" and PARAMS["model"]["fusion"] == "concat"


def test_swept_alpha_reaches_iprm():
    from mmbalance.methods import MethodContext, build_method

    method, m, _, _ = point_config(PARAMS, "cremad", "iprm", "alpha", 0.3)
    assert m["alpha"] == 0.3
    built = build_method(method, m, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2, dataset="cremad"))
    assert built.alpha == 0.3


def test_unknown_param_fails_naming_the_run():
    with pytest.raises(KeyError, match="run 'opm'.*qbase"):
        point_config(PARAMS, "cremad", "opm", "qbase", 0.3)


# ---- dvc.yaml ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_stages(full_profile_root) -> dict[str, dict]:
    """dvc.yaml's resolved sweep stages under the full profile (the default runs none): name →
    cmd, deps, params, outs."""
    from dvc.repo import Repo

    with Repo(str(full_profile_root)) as repo:
        return {s.name: {"cmd": s.cmd, "deps": [d.def_path for d in s.deps],
                         "params": sorted(k for d in s.deps if hasattr(d, "params") for k in d.params),
                         "outs": [o.def_path for o in s.outs]}
                for s in repo.index.stages if s.name.startswith("sweep-")}


def _option(cmd: str, name: str) -> str:
    words = cmd.split()
    return words[words.index(name) + 1]


def test_dvc_generates_one_stage_per_point(sweep_stages, full_profile):
    points = expand_points(full_profile[0]["sweeps"])
    assert len(points) == 117 and set(sweep_stages) == {p.stage for p in points}
    for p in points:
        st = sweep_stages[p.stage]
        folder = f"results/sweeps/{p.dataset}/{p.run}/{p.folder}"
        assert (_option(st["cmd"], "--run"), _option(st["cmd"], "--param")) == (p.run, p.param)
        assert parse_value(_option(st["cmd"], "--value")) == p.value and _option(st["cmd"], "--out") == folder
        assert {f"{folder}/{o}" for o in ("results.json", "curves.json", "predictions", "metrics.json")} == set(st["outs"])


def test_sweep_deps_follow_the_train_stage(sweep_stages):
    """Of the method plug-ins only the run's manifest; every imported file a dependency; no
    dependency on the sweeps block (adding a value leaves the other points cached)."""
    from test_cache_granularity import SHARED_METHOD_FILES, covered, imported_modules, manifest_code

    name, st = next(iter(sweep_stages.items()))
    run = _option(st["cmd"], "--run")
    assert not {d for d in st["deps"] if d.startswith("src/mmbalance/methods")}
    assert f"data/method_sources/{run}.json" in st["deps"]
    # the shared training code is in the run manifest (the method-sources stage's --code list)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = st["deps"] + manifest_code({"method-sources": {"cmd": stages["method-sources"]["cmd"]}})
    missing = sorted(f for f in imported_modules("stages/sweep.py")
                     if not covered(f, deps) and not (f.startswith("src/mmbalance/methods/") and f not in SHARED_METHOD_FILES))
    assert not missing, f"{name} imports files it does not depend on: {missing}"
    # its settings come from the run's params file (run-params), not from params of its own
    assert st["params"] == [] and f"data/run_params/{run}.yaml" in st["deps"]
    assert _option(st["cmd"], "--params") == f"data/run_params/{run}.yaml"


# ---- end to end on tiny data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Mini CREMA-D (36 clips), tiny model, 1 epoch, 2 seeds."""
    base = tmp_path_factory.mktemp("sweep")
    get_generator("cremad")(base / "raw", clips_per_class=6, seed=0, show_progress=False)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["prepare"].update(workers=1, shard_max_count=50)
    p["datasets"]["cremad"]["frame_size"] = 16
    p["datasets"]["cremad"]["split"].update(val_fraction=0.25, test_fraction=0.25)
    p["seeds"] = [0, 1]
    p["train"].update(epochs=1, batch_size=8, num_threads=1, seed_workers=1)
    p["model"]["encoders"]["spectrogram"].update(channels=[4, 8], input_size=[16, 20])
    p["model"]["encoders"]["frames"].update(channels=[4, 8])
    p["sweeps"] = {"ogm_alpha": {"run": "ogm", "param": "alpha", "values": [0.1, 2.0], "datasets": ["cremad"], "default": 0.8}}
    (base / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "cremad", "--root",
                           str(base / "raw"), "--out", str(base / "shards"), "--params", str(base / "params.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base


def test_two_point_sweep_trains_and_is_drawn(tiny):
    from mmbalance.report.diagnostics import diagnostics_section, render_diagnostics
    from mmbalance.report.sweeps import load_sweeps
    from mmbalance.report.tables import RunSummary

    params = load_params(tiny / "params.yaml")
    folders = []
    for p in expand_points(params["sweeps"]):
        out = tiny / "results" / "sweeps" / p.dataset / p.run / p.folder
        if p.value == 0.1:  # the stage's command line, as dvc.yaml writes it
            proc = subprocess.run([sys.executable, str(ROOT / "stages" / "sweep.py"), "--dataset", p.dataset, "--run", p.run,
                                   "--param", p.param, "--value", value_text(p.value), "--shards", str(tiny / "shards"),
                                   "--out", str(out), "--params", str(tiny / "params.yaml"), "--live", str(out.parent / "live")],
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            run_point(tiny / "shards", out, p.dataset, p.run, p.param, p.value, params)
        results = json.loads((out / "results.json").read_text())
        assert results["sweep"] == {"param": "alpha", "value": p.value} and set(results["seeds"]) == {"0", "1"}
        assert (out / "predictions" / "seed1.npz").exists() and set(json.loads((out / "curves.json").read_text())) == {"0", "1"}
        assert "acc" in json.loads((out / "metrics.json").read_text())
        folders.append(out / "results.json")

    points = load_sweeps(folders, params["sweeps"])
    assert [(p.run, p.param, p.value, p.default, p.summary.n_seeds) for p in points] == [
        ("ogm", "alpha", 0.1, 0.8, 2), ("ogm", "alpha", 2.0, 0.8, 2)]
    concat = RunSummary(dataset="cremad", method="concat", fusion="concat", profile="mini", selection=None,
                        modalities=["audio", "visual"], n_seeds=2, metrics={"acc": [0.5, 0.52]})
    plots = tiny / "reports" / "plots"
    drawn = {d.name: d for d in render_diagnostics("cremad", {"concat": concat}, {}, plots, tiny / "reports", points)}
    assert drawn["sensitivity_ogm"].path == "plots/cremad/sensitivity_ogm.png"
    assert (plots / "cremad" / "sensitivity_ogm.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn["sensitivity_iprm"].path is None and "sweep-iprm_" in drawn["sensitivity_iprm"].reason
    assert "sensitivity_ogm.png" in diagnostics_section("opm_ogm", list(drawn.values()))
    assert "`full` profile" not in drawn["sensitivity_ogm"].label
    # points this profile does not sweep (params `sweeps` lists no such dataset) are said to be another profile's
    elsewhere = {d.name: d for d in render_diagnostics("cremad", {"concat": concat}, {}, plots, tiny / "reports", points,
                                                       swept_here=set())}
    assert "committed points of the `full` profile's sweep stages" in elsewhere["sensitivity_ogm"].label
    here = render_diagnostics("cremad", {"concat": concat}, {}, plots, tiny / "reports", points, swept_here={("cremad", "ogm")})
    assert "`full` profile" not in next(d for d in here if d.name == "sensitivity_ogm").label
    assert "sensitivity_ogm" not in (diagnostics_section("iprm", list(drawn.values())) or "")
    # a dataset without sweep points lists no sensitivity figure (no "not run" lines on its pages)
    other = render_diagnostics("ave", {"concat": replace(concat, dataset="ave")}, {}, plots, tiny / "reports", points)
    assert not [d for d in other if d.name.startswith("sensitivity_")]


def test_default_marker_position():
    """The default sits on evenly spaced ticks: on its tick, or between two ticks linearly."""
    from mmbalance.report.sweeps import _position

    values = [0.1, 0.25, 0.5, 1.0, 2.0]
    assert _position(values, 0.5) == 2.0 and _position(values, 0.75) == 2.5 and _position(values, 5.0) == 4.0
