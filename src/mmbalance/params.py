"""Reading the params file: stages read only the keys they declare in dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_params(path: Path) -> dict:
    """Parse a params YAML file."""
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def lookup(params: dict, dotted: str):
    """``lookup(p, "methods.ogm_ge")`` → ``p["methods"]["ogm_ge"]``; a missing key names the path."""
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params key {dotted!r} is missing (no {part!r})")
        node = node[part]
    return node
