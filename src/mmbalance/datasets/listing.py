"""The listing of a generated raw dataset: every file under its root with its size and MD5.

The prepare stage's DVC dependency on its raw data is params ``datasets.<dataset>.root_dep``.
With real data that is the root folder itself. With data the ``generate`` stage writes, it is
this listing (``data/raw/<dataset>.files.json``), written by ``generate`` beside the folder: DVC
already hashes the folder as generate's output, and hashing its thousands of files a second time
for prepare's dependency was a third of a no-op ``dvc repro`` (docs/performance.md). The listing
changes whenever a file's content does, so prepare re-runs exactly when it would have.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mmbalance.outputs import json_lines


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes (read in 1-MiB chunks)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def listing(root: Path) -> dict:
    """``{"root": root, "files": {relative path: {"md5", "size"}}}``, paths sorted, POSIX."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = {"md5": file_md5(path), "size": path.stat().st_size}
    return {"root": Path(root).as_posix(), "files": dict(sorted(files.items()))}


def write(root: Path, out: Path) -> dict:
    """Write ``root``'s listing to ``out`` (JSON, one file per line); returns it."""
    data = listing(root)
    if not data["files"]:
        raise ValueError(f"{root}: no files to list (did the generator write anything?)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_lines({"root": data["root"], "files": data["files"]}, depth=2))
    return data


def check_root_dep(root: Path, dep: Path) -> None:
    """The prepare stage's dependency must stand for its root: the folder itself, or a listing
    of that folder (not of another one: a listing left from the mini data while ``root`` points
    at real data would let DVC miss changes to the real files)."""
    if Path(dep).as_posix() == Path(root).as_posix():
        return
    if not Path(dep).is_file():
        raise ValueError(f"params datasets root_dep {dep}: neither the root {root} nor a listing file of it")
    try:
        listed = json.loads(Path(dep).read_text())["root"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{dep}: not a raw-data listing (no 'root'); set root_dep to {root} for real data") from None
    if listed != Path(root).as_posix():
        raise ValueError(f"{dep} lists {listed}, but prepare reads {root}: set params datasets root_dep to {root} "
                         "(real data) or to the listing the generate stage writes for that folder")
