"""Cache granularity of the pipeline: each training stage depends, through its run manifest, on
the shared code its run imports and, of the method plug-ins, only on its own method's files, so
editing one method's file re-runs only that method's runs. Registry-driven over dvc.yaml's
resolved stages."""

import hashlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance.method_sources import (code_hashes, dataset_manifest, manifest, method_files, method_imports,
                                      write_dataset_manifests, write_manifests)
from mmbalance.methods import METHODS
from mmbalance.params import resolve_run

ROOT = Path(__file__).resolve().parents[1]
METHODS_DIR = ROOT / "src" / "mmbalance" / "methods"
MANIFESTS = "data/method_sources"
SHARED_METHOD_FILES = {"src/mmbalance/methods/__init__.py", "src/mmbalance/methods/base.py"}
# stages whose run names a method (option after which the run name follows in the command)
RUN_STAGES = {"train-": "--method", "tune-": "--run", "sweep-": "--run", "experiment": "--method"}
# stages that load every trained model of one dataset (name: <stage>@<dataset>)
DATASET_STAGES = ("evaluate@", "costs@")


@pytest.fixture(scope="module")
def stages(full_profile) -> dict[str, dict]:
    """dvc.yaml's stages as DVC resolves them (matrix/foreach expanded) under the full profile,
    which has every kind of stage (the default tunes and sweeps nothing): name → definition."""
    return full_profile[1]


@pytest.fixture(scope="module")
def params(full_profile) -> dict:
    return full_profile[0]


def run_stages(stages: dict) -> dict[str, str]:
    """Training stages → the run they train (read from the command line, as the stage does)."""
    out = {}
    for name, st in stages.items():
        option = next((opt for prefix, opt in RUN_STAGES.items() if name.startswith(prefix)), None)
        if option:
            words = st["cmd"].split()
            out[name] = words[words.index(option) + 1]
    return out


def imported_modules(script: str) -> set[str]:
    """Repository-relative files of the mmbalance modules imported by loading ``script`` (fresh
    interpreter; the stage's own lazy imports run too, since the loop is imported by run.py)."""
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('stage', {script!r}); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); import mmbalance.train.run; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('mmbalance') and getattr(m, '__file__', None)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {str(Path(f).resolve().relative_to(ROOT)) for f in out.split()}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def manifest_code(stages: dict) -> list[str]:
    """The shared training code the method-sources stage hashes into every run manifest (--code)."""
    words = stages["method-sources"]["cmd"].split()
    start = words.index("--code") + 1
    return words[start:next(i for i in range(start, len(words)) if words[i].startswith("--"))]


def test_every_training_stage_found(stages, params):
    runs = run_stages(stages)
    trains = {n for n in runs if n.startswith("train-")}
    assert len(trains) == sum(len(v) for v in params["benchmark"].values())
    assert "experiment" in runs and any(n.startswith("tune-") for n in runs)


def test_train_deps_name_only_their_own_method(stages):
    """No training stage depends on library code directly: each depends on its run's manifest,
    which the manifest stage writes from the methods folder and the shared code it depends on."""
    for name, run in run_stages(stages).items():
        deps = stages[name]["deps"]
        library = sorted(d for d in deps if d.startswith("src/mmbalance/") and d not in {"src/mmbalance/tune.py", "src/mmbalance/sweeps.py"})
        assert not library, f"{name}: library code deps {library} (they belong in the run manifest)"
        assert f"{MANIFESTS}/{run}.json" in deps, f"{name}: no dependency on its run manifest"
    ms = stages["method-sources"]
    assert "src/mmbalance/methods" in ms["deps"] and f"--out {MANIFESTS}" in ms["cmd"]
    assert set(manifest_code(stages)) - SHARED_METHOD_FILES <= set(ms["deps"]), "--code paths the stage does not depend on"


@pytest.mark.parametrize("script,prefix", [("stages/train.py", "train-"), ("stages/tune.py", "tune-"),
                                           ("stages/sweep.py", "sweep-"), ("stages/embed.py", "embed-")])
def test_shared_deps_cover_what_the_stage_imports(stages, script, prefix):
    """Every mmbalance file the stage imports is a dependency or, for training stages, in the
    run manifest's shared code; method plug-ins are in the run's manifest: a change to the
    shared code re-runs every run."""
    name = next(n for n, st in stages.items() if n.startswith(prefix))
    deps = stages[name]["deps"] + (manifest_code(stages) if name in run_stages(stages) else [])
    missing = sorted(f for f in imported_modules(script)
                     if not covered(f, deps) and not (f.startswith("src/mmbalance/methods/") and f not in SHARED_METHOD_FILES))
    assert not missing, f"{name} imports files it does not depend on: {missing}"


def test_run_manifest_hashes_the_shared_code(tmp_path):
    """Folders are walked without byte-code caches; editing a shared file changes every manifest."""
    code = tmp_path / "code"
    (code / "__pycache__").mkdir(parents=True)
    (code / "loop.py").write_text("a = 1\n")
    (code / "__pycache__" / "loop.cpython-311.pyc").write_bytes(b"\0")
    one = tmp_path / "one.py"
    one.write_text("b = 2\n")
    hashes = code_hashes([code, one])
    assert list(hashes) == [f"{code.as_posix()}/loop.py", one.as_posix()]
    assert hashes[one.as_posix()] == hashlib.sha256(b"b = 2\n").hexdigest()
    before = manifest("mla", "mla", METHODS_DIR, hashes)
    one.write_text("b = 3\n")
    assert manifest("mla", "mla", METHODS_DIR, code_hashes([code, one])) != before
    assert before["code"] == hashes and set(before["files"]) == {"mla.py"}
    with pytest.raises(FileNotFoundError, match="nope"):
        code_hashes([tmp_path / "nope"])


@pytest.mark.parametrize("method", METHODS.names())
def test_manifest_holds_the_registered_class_file_and_its_method_imports(method):
    """The run's files: the one defining the registered class (inspect) plus, transitively, the
    method files it imports, and nothing else."""
    defining = Path(inspect.getsourcefile(METHODS.get(method))).name
    files = {p.name for p in method_files(method, METHODS_DIR)}
    closure, todo = set(), [defining]
    while todo:
        f = todo.pop()
        if f not in closure:
            closure.add(f)
            todo += [f"{m}.py" for m in method_imports(METHODS_DIR / f)]
    assert defining in files and files == closure


def test_manifests_by_hand():
    # OGM* and OPM+OGM are OGM variants (ogm.py) built on OGM-GE and OPM; Concat and the unimodal
    # baselines (plain.py) use OGM-GE's discrepancy ratio; MLA stands alone
    assert [p.name for p in method_files("ogm_star", METHODS_DIR)] == ["ogm.py", "ogm_ge.py", "opm.py"]
    assert [p.name for p in method_files("audio_only", METHODS_DIR)] == ["ogm_ge.py", "plain.py"]
    assert [p.name for p in method_files("mla", METHODS_DIR)] == ["mla.py"]
    assert manifest("concat__sum", "concat", METHODS_DIR)["files"].keys() == {"ogm_ge.py", "plain.py"}


def test_every_run_has_a_manifest_and_stale_ones_go(params, tmp_path):
    runs = {run: resolve_run(params, run)[0] for run in params["methods"]}
    (tmp_path / "gone.json").write_text("{}")
    written = write_manifests(runs, METHODS_DIR, tmp_path)
    assert {p.stem for p in tmp_path.glob("*.json")} == set(runs) == {p.stem for p in written}
    body = json.loads((tmp_path / "mla.json").read_text())
    assert body["method"] == "mla" and set(body["files"]) == {"mla.py"} and len(body["files"]["mla.py"]) == 64


def test_a_copy_outside_the_methods_dir_is_refused(tmp_path):
    (tmp_path / "mla.py").write_text("# not the imported module\n")
    with pytest.raises(FileNotFoundError, match="not in"):
        method_files("mla", tmp_path)


def test_a_byte_identical_copy_is_accepted(tmp_path):
    """A queued experiment's temporary workspace holds a copy of the methods folder while Python
    imports the installed checkout: the same bytes describe the code that runs."""
    (tmp_path / "mla.py").write_bytes((METHODS_DIR / "mla.py").read_bytes())
    assert method_files("mla", tmp_path) == [tmp_path / "mla.py"]


def test_byte_code_caches_do_not_count_as_code_changes(tmp_path):
    # a code folder's hash must not move when Python writes __pycache__/*.pyc next to the sources
    # (they hold the source's mtime): DVC would re-run every stage after any import otherwise
    from dvc.ignore import DvcIgnoreFilter
    from dvc.fs import LocalFileSystem

    ignore = DvcIgnoreFilter(LocalFileSystem(), str(ROOT))
    pyc = ROOT / "src" / "mmbalance" / "train" / "__pycache__" / "loop.cpython-311.pyc"
    assert ignore.is_ignored_file(str(pyc)) and ignore.is_ignored_dir(str(pyc.parent))
    assert not ignore.is_ignored_file(str(ROOT / "src" / "mmbalance" / "train" / "loop.py"))


def test_dataset_stages_depend_on_their_dataset_manifest_only(stages, params):
    """evaluate / costs load every model of their dataset: of the method plug-ins they depend on
    the shared files and the dataset's merged manifest, not on the methods folder."""
    found = {n for n in stages if n.startswith(DATASET_STAGES)}
    assert found == {f"{s}{ds}" for s in DATASET_STAGES for ds in params["benchmark"]}
    for name in found:
        deps = stages[name]["deps"]
        method_deps = {d for d in deps if d.startswith("src/mmbalance/methods")}
        assert method_deps == SHARED_METHOD_FILES, f"{name}: method code deps {sorted(method_deps)}"
        assert f"{MANIFESTS}/datasets/{name.split('@')[1]}.json" in deps, name
    # the costs stage times every run against Concat (or, on AVE localisation, Concat on a
    # localisation backbone): it must be one of each dataset's runs
    assert all("concat" in runs or any(r.startswith("concat__") for r in runs) for runs in params["benchmark"].values())


def test_dataset_manifest_by_hand():
    runs = {"mla": {"files": {"mla.py": "a"}}, "ogm": {"files": {"ogm.py": "b", "ogm_ge.py": "c"}},
            "concat": {"files": {"ogm_ge.py": "c", "plain.py": "d"}}}
    body = dataset_manifest("x", ["ogm", "concat"], runs)
    assert body == {"dataset": "x", "runs": ["concat", "ogm"], "files": {"ogm.py": "b", "ogm_ge.py": "c", "plain.py": "d"}}
    with pytest.raises(KeyError, match="benchmark.x lists run 'nope'"):
        dataset_manifest("x", ["nope"], runs)


def _manifests(params: dict, out: Path) -> dict[str, str]:
    """Run and dataset manifests written to ``out`` → {repository-style path: text}."""
    runs = {run: resolve_run(params, run)[0] for run in params["methods"]}
    write_manifests(runs, METHODS_DIR, out)
    write_dataset_manifests(params["benchmark"], out, out / "datasets")
    return {f"{MANIFESTS}/{p.relative_to(out).as_posix()}": p.read_text() for p in out.rglob("*.json")}


@pytest.mark.parametrize("edited", ["amco.py", "gmm_al.py", "ogm_ge.py"])
def test_editing_one_method_file_makes_only_its_stages_stale(stages, params, tmp_path, edited):
    """The stages whose dependencies change when ``edited`` changes (its new hash in every
    manifest that lists it): exactly the train / tune / sweep / experiment stages of the runs
    that use it and the evaluate / costs stages of the datasets those runs are trained on."""
    before = _manifests(params, tmp_path)
    after = {path: text for path, text in before.items()}
    for path, text in before.items():
        body = json.loads(text)
        if edited in body["files"]:
            body["files"][edited] = "0" * 64
            after[path] = json.dumps(body)
    changed = {path for path in before if before[path] != after[path]}
    stale = {name for name, st in stages.items() if changed & set(st["deps"])}
    users = {run for run in params["methods"] if edited in {p.name for p in method_files(resolve_run(params, run)[0], METHODS_DIR)}}
    runs = run_stages(stages)
    expected = {name for name, run in runs.items() if run in users}
    expected |= {f"{s}{ds}" for s in DATASET_STAGES for ds, listed in params["benchmark"].items() if users & set(listed)}
    assert stale == expected
    if edited == "amco.py":  # AMCo runs on three datasets: seven others keep their evaluate / costs
        assert sorted(n for n in stale if n.startswith("evaluate@")) == [
            "evaluate@cremad", "evaluate@kinetics_sounds", "evaluate@ucf101"]
