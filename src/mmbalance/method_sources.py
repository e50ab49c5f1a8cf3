"""The source files each run's training is made of, for per-method cache invalidation.

A training stage runs the shared training code (loop, models, shards, ``methods/base.py``, …)
and the file that defines its registered method class plus the method files that file imports
(OGM's variants build on ``ogm_ge.py`` and ``opm.py``; Concat imports
``ogm_ge.discrepancy_ratios``). DVC cannot look a run's file up by name in a templated
``dvc.yaml``, so the ``method-sources`` stage writes one small manifest per run, ``<run>.json``:
the shared code's files and the run's method files, with their SHA-256. A train stage depends on
its own run's manifest (plus its stage script, params file and shards), which changes only when
one of those files does. One manifest instead of ~15 code dependencies per training stage keeps
dvc.lock small: DVC re-reads and rewrites the whole lock after every stage it runs.

The per-dataset stages that load every trained model of a dataset (``evaluate``, ``costs``) depend
on ``datasets/<dataset>.json`` instead: the union of the manifests of that dataset's runs. Editing
a method's file re-runs them only for the datasets that method is trained on.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from pathlib import Path

from mmbalance.outputs import remove_unlisted

METHODS_PACKAGE = "mmbalance.methods"
# imported by every run: hashed with the shared training code (the stage's --code), not per method
SHARED = ("__init__", "base")


def method_imports(path: Path) -> set[str]:
    """Modules of the methods package that the file at ``path`` imports (names, e.g. ``"opm"``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ``from .opm import OPM`` / ``from . import opm``
                base = node.module.split(".")[0] if node.module else None
                names |= {base} if base else {a.name for a in node.names}
            elif node.module == METHODS_PACKAGE:
                names |= {a.name for a in node.names}
            elif node.module and node.module.startswith(METHODS_PACKAGE + "."):
                names.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[2] for a in node.names if a.name.startswith(METHODS_PACKAGE + ".")}
    return names - set(SHARED)


def defining_file(method: str, methods_dir: Path) -> Path:
    """``methods_dir/<file>`` of the module that defines the class registered as ``method``.

    The module is found with ``inspect`` on the registered class; its file of the same name in
    ``methods_dir`` (the code DVC hashes) is returned. The imported package may be another copy
    with the same bytes (a queued ``dvc exp run`` works in a temporary copy of the workspace while
    Python imports the installed editable package); a copy that differs is refused, since its hash
    would not describe the code that runs."""
    from mmbalance.methods import METHODS

    cls = METHODS.get(method)
    source = Path(inspect.getsourcefile(cls))
    path = methods_dir / source.name
    same = path.is_file() and (path.samefile(source) or path.read_bytes() == source.read_bytes())
    if cls.__module__ != f"{METHODS_PACKAGE}.{source.stem}" or not same:
        raise FileNotFoundError(f"method {method!r} is defined in {source}, which is not in {methods_dir} "
                                f"(nor a byte-identical copy): install this checkout (pip install -e .) or "
                                f"pass its methods folder")
    return path


def method_files(method: str, methods_dir: Path) -> list[Path]:
    """The defining file of ``method`` and the methods-package files it imports, transitively
    (sorted; ``__init__.py`` and ``base.py`` excluded: every run imports them)."""
    seen: dict[str, Path] = {}
    todo = [defining_file(method, methods_dir)]
    while todo:
        path = todo.pop()
        if path.stem in seen:
            continue
        seen[path.stem] = path
        for name in method_imports(path):
            dep = methods_dir / f"{name}.py"
            if not dep.is_file():
                raise FileNotFoundError(f"{path} imports {METHODS_PACKAGE}.{name}, but {dep} does not exist")
            todo.append(dep)
    return sorted(seen.values())


def code_hashes(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of every file of ``paths`` (files, or folders walked recursively without Python's
    byte-code caches, which DVC ignores too), keyed by path as given (forward slashes, sorted).
    A path that does not exist is an error naming it."""
    files: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            found = [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"shared training code {path} does not exist")
        files.update({f.as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in found})
    return dict(sorted(files.items()))


def manifest(run: str, method: str, methods_dir: Path, code: dict[str, str] | None = None) -> dict:
    """``{"run", "method", "files": {file name: sha256}, "code": {path: sha256}}``: what a run's
    training depends on among the method plug-ins (names relative to ``methods_dir``, so the
    manifest is the same in every checkout) and the shared training code (``code``, from
    :func:`code_hashes`; the same for every run)."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in method_files(method, methods_dir)}
    return {"run": run, "method": method, "files": files, "code": dict(code or {})}


def write_manifests(runs: dict[str, str], methods_dir: Path, out: Path, code: dict[str, str] | None = None) -> list[Path]:
    """One ``<run>.json`` manifest per run (``runs``: run name → registered method; ``code``: the
    shared training code's hashes) in ``out``; files of runs no longer listed are removed.
    Returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run, method in sorted(runs.items()):
        path = out / f"{run}.json"
        path.write_text(json.dumps(manifest(run, method, methods_dir, code), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return remove_unlisted(out, written, "*.json")


def dataset_manifest(dataset: str, runs: list[str], run_manifests: dict[str, dict]) -> dict:
    """``{"dataset", "runs", "files": {file name: sha256}}``: the method files any of ``runs``
    (the dataset's benchmark list) trains with, from their run manifests (``run_manifests``:
    run → :func:`manifest`)."""
    files: dict[str, str] = {}
    for run in runs:
        if run not in run_manifests:
            raise KeyError(f"benchmark.{dataset} lists run {run!r}, which params `methods` does not define")
        files.update(run_manifests[run]["files"])
    return {"dataset": dataset, "runs": sorted(runs), "files": dict(sorted(files.items()))}


def write_dataset_manifests(benchmark: dict[str, list[str]], runs_dir: Path, out: Path) -> list[Path]:
    """One ``<dataset>.json`` per benchmark dataset in ``out`` (see :func:`dataset_manifest`),
    read from the run manifests in ``runs_dir``; files of datasets no longer listed are removed."""
    out.mkdir(parents=True, exist_ok=True)
    needed = sorted({run for runs in benchmark.values() for run in runs})
    run_manifests = {run: json.loads((runs_dir / f"{run}.json").read_text())
                     for run in needed if (runs_dir / f"{run}.json").is_file()}
    written = []
    for dataset, runs in sorted(benchmark.items()):
        path = out / f"{dataset}.json"
        body = dataset_manifest(dataset, list(runs), run_manifests)
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return remove_unlisted(out, written, "*.json")

