"""The stage-params stage: generate / prepare / evaluate / costs / embed read their own params file."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mmbalance.params import load_params, lookup, split_options
from mmbalance.prepare import recipe_from_params
from mmbalance.stage_params import Selection, select, write_stage_params

ROOT = Path(__file__).resolve().parents[1]
OUT = "data/stage_params"
# stage (as DVC names it, up to '@') → the file it reads ({key}: the stage's foreach key)
READERS = {"generate": "generate/{key}", "prepare": "prepare/{key}", "evaluate": "evaluate",
           "costs": "costs", "embed-cremad": "embed"}


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(ROOT / "params.yaml")


def _selections(cmd: str) -> list[Selection]:
    words = shlex.split(cmd)
    return [Selection.parse(w) for w in words[words.index("--select") + 1:] if not w.startswith("--")]


def test_a_selection_by_hand():
    p = {"prepare": {"workers": 2}, "datasets": {"cremad": {"root": "a"}, "ave": {"root": "b"}},
         "embedding": {"runs": ["x"], "seed": 0, "perplexity": 30}}
    assert select(p, ("prepare", "datasets.cremad")) == {"prepare": {"workers": 2}, "datasets": {"cremad": {"root": "a"}}}
    assert select(p, ("embedding.seed", "embedding.perplexity")) == {"embedding": {"seed": 0, "perplexity": 30}}
    sel = Selection.parse("prepare/{datasets}=prepare,datasets.{datasets}")
    assert sel.expand(p) == {"prepare/ave": ("prepare", "datasets.ave"), "prepare/cremad": ("prepare", "datasets.cremad")}
    assert Selection.parse("costs=costs, train").expand(p) == {"costs": ("costs", "train")}
    with pytest.raises(KeyError, match="datasets.vggsound"):
        select(p, ("datasets.vggsound",))


@pytest.mark.parametrize("text", ["costs", "=costs", "costs=", "a=b.{x}", "a/{x}/{y}=b.{x}"])
def test_malformed_selections_are_named(text):
    with pytest.raises(ValueError, match="selection"):
        Selection.parse(text)


def test_stale_files_go_unchanged_files_stay_and_clashes_raise(tmp_path):
    p = {"generate": {"a": {"n": 1}, "b": {"n": 2}}, "costs": {"k": 1}}
    sels = [Selection.parse("generate/{generate}=generate.{generate}"), Selection.parse("costs=costs")]
    write_stage_params(p, sels, tmp_path)
    (tmp_path / "generate" / "gone.yaml").write_text("{}\n")
    kept = tmp_path / "costs.yaml"
    before = kept.stat().st_mtime_ns
    written = write_stage_params(p, sels, tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in written] == ["costs.yaml", "generate/a.yaml", "generate/b.yaml"]
    assert not (tmp_path / "generate" / "gone.yaml").exists() and kept.stat().st_mtime_ns == before
    assert load_params(tmp_path / "generate" / "b.yaml") == {"generate": {"b": {"n": 2}}}
    with pytest.raises(ValueError, match="costs.yaml"):
        write_stage_params(p, [*sels, Selection.parse("costs=generate")], tmp_path)


def test_each_stage_reads_from_its_file_what_it_read_from_params_yaml(resolved_stages, params, tmp_path):
    """The files the stage-params command writes give every reading stage the same values as
    params.yaml: generate's block, prepare's recipe and split, evaluate's, costs' and embed's."""
    write_stage_params(params, _selections(resolved_stages["stage-params"]["cmd"]), tmp_path)
    for ds in params["generate"]:
        assert lookup(load_params(tmp_path / f"generate/{ds}.yaml"), f"generate.{ds}") == params["generate"][ds]
    for ds in params["datasets"]:
        own = load_params(tmp_path / f"prepare/{ds}.yaml")
        assert recipe_from_params(own, ds) == recipe_from_params(params, ds)
        assert split_options(own, ds, "") == split_options(params, ds, "")
        assert lookup(own, "prepare") == params["prepare"]
    assert load_params(tmp_path / "evaluate.yaml") == {"robustness": params["robustness"]}
    assert load_params(tmp_path / "costs.yaml") == {"costs": params["costs"], "train": params["train"]}
    embed = load_params(tmp_path / "embed.yaml")["embedding"]
    assert embed == {k: v for k, v in params["embedding"].items() if k != "runs"}


def test_dataset_stages_read_their_file_and_declare_no_params(resolved_stages):
    """``--params data/stage_params/<file>.yaml``, a dependency on it, no params dependency; the
    stage-params stage declares exactly the blocks its selections read."""
    found = 0
    for name, st in resolved_stages.items():
        group, _, key = name.partition("@")
        if group not in READERS:
            continue
        path = f"{OUT}/{READERS[group].format(key=key)}.yaml"
        words = st["cmd"].split()
        assert words[words.index("--params") + 1] == path and path in st["deps"], name
        assert st["params"] == [], name
        found += 1
    assert found >= 40
    sp = resolved_stages["stage-params"]
    read = {k.split(".{")[0] for sel in _selections(sp["cmd"]) for k in sel.keys}
    assert read == set(sp["params"]) and f"--out {OUT}" in sp["cmd"]
