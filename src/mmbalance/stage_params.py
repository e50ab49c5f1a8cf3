"""Each dataset stage's own params file, split from params.yaml (generate, prepare, evaluate, …).

DVC re-reads and re-parses the whole params file for every stage that declares a params
dependency: with ~50 generate / prepare / evaluate / costs / embed stages and a params.yaml of
~2,700 lines that was about a fifth of a no-op ``dvc repro``. The ``stage-params`` stage reads
params.yaml once and writes, for each selection given on its command line, a file holding the
selected keys in the same nesting as params.yaml, so a stage reads its file exactly as it read
params.yaml. A stage depends on its file instead of declaring params; editing one dataset's block
rewrites only that dataset's files, so only its stages re-run (``mmbalance.run_params`` does the
same for training runs).

A selection is ``NAME=KEY[,KEY…]``. ``{BLOCK}`` in it (a dotted params path) stands for each key of
that block in turn: ``prepare/{datasets}=prepare,datasets.{datasets}`` writes
``prepare/cremad.yaml`` with ``{prepare: …, datasets: {cremad: …}}``, and so on for every dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mmbalance.outputs import remove_unlisted, write_if_changed
from mmbalance.params import lookup
from mmbalance.run_params import dump

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


@dataclass(frozen=True)
class Selection:
    """One ``NAME=KEY[,KEY…]`` of the command line: ``name`` is the file's path (no suffix) under
    the output folder, ``keys`` the dotted params keys it holds; either may hold ``{BLOCK}``."""

    name: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Selection":
        """``"costs=costs,train"`` → ``Selection("costs", ("costs", "train"))``; ValueError names
        the text when it has no ``=``, no key, or placeholders that differ between its two sides."""
        name, sep, keys = text.partition("=")
        parts = tuple(k.strip() for k in keys.split(",") if k.strip())
        if not sep or not name.strip() or not parts:
            raise ValueError(f"stage params selection {text!r}: expected NAME=KEY[,KEY...]")
        blocks = set(_PLACEHOLDER.findall(name))
        if len(blocks) > 1 or not set().union(*(_PLACEHOLDER.findall(k) for k in parts)) <= blocks:
            raise ValueError(f"stage params selection {text!r}: a placeholder {{BLOCK}} must appear in "
                             "NAME, the same one in every KEY that has one, and only one per NAME")
        return cls(name.strip(), parts)

    def expand(self, params: dict) -> dict[str, tuple[str, ...]]:
        """File name → its dotted keys, one entry per key of the ``{BLOCK}`` (sorted), or the one
        entry of a selection without a placeholder."""
        found = _PLACEHOLDER.findall(self.name)
        if not found:
            return {self.name: self.keys}
        block = found[0]
        token = "{" + block + "}"
        return {self.name.replace(token, key): tuple(k.replace(token, key) for k in self.keys)
                for key in sorted(lookup(params, block) or {})}


def select(params: dict, keys: tuple[str, ...]) -> dict:
    """The sub-tree of ``params`` holding ``keys`` (dotted), in the same nesting, values untouched:
    ``select(p, ("prepare", "datasets.cremad"))`` → ``{"prepare": …, "datasets": {"cremad": …}}``.
    A missing key raises KeyError naming its path."""
    out: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = lookup(params, key)
    return out


def write_stage_params(params: dict, selections: list[Selection], out: Path) -> list[Path]:
    """``<out>/<name>.yaml`` for every expanded selection; ``*.yaml`` files under ``out`` that no
    selection names any more are removed, and a file whose text is unchanged keeps its mtime.
    Returns the written paths, sorted. ValueError if two selections name the same file."""
    files: dict[str, tuple[str, ...]] = {}
    for sel in selections:
        for name, keys in sel.expand(params).items():
            if name in files:
                raise ValueError(f"stage params: two selections write {name}.yaml")
            files[name] = keys
    written = []
    for name in sorted(files):
        path = out / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_if_changed(path, dump(select(params, files[name]))))
    return remove_unlisted(out, written, "**/*.yaml")
