"""The source files each dataset's generate and prepare steps are made of, for per-dataset cache
invalidation (the datasets' counterpart of :mod:`mmbalance.method_sources`).

``generate@<key>`` runs the mini generator registered as ``<key>``; ``prepare@<key>`` runs the
adapter registered as ``<key>``. Depending on the whole ``datasets`` folder, adding one dataset's
adapter would re-generate and re-prepare every other dataset. The ``dataset-sources`` stage
writes one small manifest per step and key, ``generate/<key>.json`` and ``prepare/<key>.json``:
the module file that defines the registered generator function or adapter class plus the
``mmbalance.datasets`` and ``mmbalance.media`` files it imports, transitively (the UCF-101-Three
adapter lives in ``ucf101.py``; mini Kinetics-Sounds imports ``_av_synth.py`` and the
Kinetics-Sounds adapter; adapters import the audio / video / flow / image / text helpers), with
their SHA-256. The stages depend on their manifest and, directly, on the files every step
imports (:data:`SHARED`) and the ``datasets/data`` folder.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path

from mmbalance.outputs import remove_unlisted

# the packages whose files a manifest lists (paths relative to the mmbalance source folder)
PACKAGES = ("mmbalance.datasets", "mmbalance.media")
# imported by every generate / prepare step: the stages depend on these directly
SHARED = ("datasets/__init__.py", "datasets/base.py", "datasets/mini/__init__.py", "media/__init__.py",
          "media/errors.py")


def _module_file(module: str, src_dir: Path) -> Path | None:
    """``src_dir``'s file of a module of :data:`PACKAGES` (``src_dir``: the ``mmbalance`` source
    folder), None for a module of another package; raises FileNotFoundError if it has no file."""
    if not any(module == p or module.startswith(p + ".") for p in PACKAGES):
        return None
    base = src_dir.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{module} is imported but neither {base}.py nor {base}/__init__.py exists")


def _imported_modules(path: Path, src_dir: Path) -> set[str]:
    """Absolute names of the modules the file at ``path`` imports (``from x import y`` may name a
    submodule ``x.y``: both are returned; names without a file are dropped by the caller)."""
    package = ".".join(["mmbalance", *path.parent.relative_to(src_dir).parts])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative to the file's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{anchor}.{node.module}" if node.module else anchor
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def _defining_file(obj: Callable | type, src_dir: Path) -> Path:
    """``src_dir``'s copy of the file defining ``obj``; a copy that differs from the imported one
    is refused (its hash would not describe the code that runs, e.g. a queued ``dvc exp run``
    importing another checkout)."""
    source = Path(inspect.getsourcefile(obj))
    path = _module_file(obj.__module__, src_dir)
    if path is None or not (path.samefile(source) or path.read_bytes() == source.read_bytes()):
        raise FileNotFoundError(f"{obj.__qualname__} is defined in {source}, which is not in {src_dir} "
                                f"(nor a byte-identical copy): install this checkout (pip install -e .)")
    return path


def source_files(obj: Callable | type, src_dir: Path) -> list[Path]:
    """The file defining ``obj`` (an adapter class or a generator function) and the datasets /
    media files it imports, transitively; sorted, :data:`SHARED` left out."""
    seen: set[Path] = set()
    todo = [_defining_file(obj, src_dir)]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imported_modules(current, src_dir):
            try:
                dep = _module_file(name, src_dir)
            except FileNotFoundError:
                continue  # ``from package import function``: the name is not a module
            if dep is not None:
                todo.append(dep)
    shared = {src_dir / s for s in SHARED}
    return sorted(seen - shared)


def manifest(step: str, key: str, obj: Callable | type, src_dir: Path) -> dict:
    """``{"step", "dataset", "files": {path relative to src_dir: sha256}}`` (relative names, so
    the manifest is the same in every checkout)."""
    files = {p.relative_to(src_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in source_files(obj, src_dir)}
    return {"step": step, "dataset": key, "files": files}


def write_manifests(generate: list[str], prepare: list[str], src_dir: Path, out: Path) -> list[Path]:
    """``out/generate/<key>.json`` per generator key and ``out/prepare/<key>.json`` per dataset
    key; manifests of keys no longer listed are removed. Returns the written paths."""
    from mmbalance.datasets.base import DATASETS
    from mmbalance.datasets.mini import GENERATORS

    written = []
    for step, keys, registry in (("generate", generate, GENERATORS), ("prepare", prepare, DATASETS)):
        folder = out / step
        folder.mkdir(parents=True, exist_ok=True)
        for key in sorted(keys):
            path = folder / f"{key}.json"
            text = json.dumps(manifest(step, key, registry.get(key), src_dir), indent=1, sort_keys=True)
            path.write_text(text + "\n")
            written.append(path)
        remove_unlisted(folder, written, "*.json")
    return written
