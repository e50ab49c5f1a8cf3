"""Profiles: a profile is a file of overrides deep-merged into params.yaml (code never forks).

    python -m mmbalance.profiles --base params.yaml --overrides profiles/paper.yaml --out params.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` updated by ``overrides``: nested dicts merge key by key, anything else replaces.

    An encoder block that changes ``name`` replaces the whole block, since the keyword arguments
    of one encoder factory mean nothing to another.
    """
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value and old.get("name", value.get("name")) == value.get("name"):
            out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--overrides", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    merged = deep_merge(yaml.safe_load(args.base.read_text()), yaml.safe_load(args.overrides.read_text()) or {})
    args.out.write_text(yaml.safe_dump(merged, sort_keys=False))
    print(f"wrote {args.out} (profile: {merged.get('profile')})")


if __name__ == "__main__":
    main()
