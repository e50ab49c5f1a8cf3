"""Stage `stage-params`: one params file per dataset stage, split from params.yaml.

Each ``--select NAME=KEY[,KEY...]`` writes ``<out>/NAME.yaml`` holding those keys in params.yaml's
nesting; ``{BLOCK}`` in a selection repeats it for every key of params ``BLOCK`` (e.g.
``generate/{generate}=generate.{generate}``). The generate, prepare, evaluate, costs and embed
stages depend on their file instead of declaring params, so DVC parses params.yaml once here
rather than once per stage (see ``mmbalance.stage_params``).

Reads params: the keys of its selections, as declared in dvc.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbalance.params import load_params
from mmbalance.stage_params import Selection, write_stage_params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--select", nargs="+", required=True, metavar="NAME=KEY[,KEY...]",
                    help="a file and the params keys it holds; {BLOCK} repeats it per key of BLOCK")
    ap.add_argument("--out", type=Path, required=True, help="folder of the stage params files")
    args = ap.parse_args(argv)
    try:
        selections = [Selection.parse(text) for text in args.select]
        written = write_stage_params(load_params(args.params), selections, args.out)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{args.params}: {e}") from None
    print(f"stage-params: {len(written)} params files in {args.out}")


if __name__ == "__main__":
    main()
