"""Archived evaluations: the costs and Shapley values of committed runs the profile does not evaluate.

The ``costs`` and ``evaluate`` stages measure the runs of the profile's benchmark list, and each
rewrites its dataset's ``costs.json`` / ``shapley.json`` with those runs only. ``results/`` also
keeps the committed runs of other profiles (the ``full`` profile's), whose models a clone does not
have; their costs and Shapley values, measured when that profile ran, are kept here instead:
``results/archive/<dataset>/{costs,shapley}.json``, each entry with its source (the commit whose
file held it, that commit's date, the device it was measured on). The report shows them for the
runs the current files lack.

    python -m mmbalance.report.archive --results results             # the files as committed at HEAD
    python -m mmbalance.report.archive --results results --history   # every committed version, newest first

An entry is archived only while it describes the committed run: every seed's test accuracy in the
run's ``results.json`` at the source commit equals today's, and for Shapley values the full
coalition's accuracy equals it as well (the coalitions were scored on the same model). Entries that
fail (a run retrained since) are left out and listed. Only committed versions are read, so every
source names a commit: commit a profile's outputs before archiving them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from mmbalance.outputs import json_lines

KINDS = ("costs", "shapley")
_TOL = 1e-9  # accuracies are fractions of the same test clips: equal up to float printing


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def committed_versions(repo: Path, path: str, history: bool) -> Iterator[tuple[dict, dict]]:
    """(source, parsed JSON) of each committed version of ``path`` (relative to ``repo``), newest
    first; only HEAD's version unless ``history``. A source is {commit, date}."""
    log = _git(repo, "log", "--format=%H %cs", *([] if history else ["-1"]), "HEAD", "--", path)
    for line in log.splitlines():
        commit, date = line.split()
        try:
            text = _git(repo, "show", f"{commit}:{path}")
        except subprocess.CalledProcessError:  # the commit deleted the file
            continue
        yield {"commit": commit, "date": date}, json.loads(text)


def seed_test_accs(results: Mapping) -> dict[str, float]:
    """{seed: test accuracy} of a run's results.json."""
    return {str(s): float(e["test"]["acc"]) for s, e in (results.get("seeds") or {}).items() if "acc" in (e.get("test") or {})}


def mismatch(kind: str, entry: Mapping, accs_then: Mapping[str, float], accs_now: Mapping[str, float]) -> str | None:
    """Why ``entry`` (one run's costs or Shapley values from a past commit) does not describe the
    committed run, or None when it does. ``accs_then`` / ``accs_now``: {seed: test accuracy} of the
    run's results.json at that commit / today."""
    if not accs_now:
        return "the run has no test accuracies"
    if set(accs_then) != set(accs_now) or any(abs(accs_then[s] - accs_now[s]) > _TOL for s in accs_now):
        return "its test accuracies then differ from today's (retrained since)"
    if kind == "shapley":
        seeds = entry.get("seeds") or {}
        if set(seeds) != set(accs_now):
            return "its Shapley seeds are not the run's seeds"
        for s, per in seeds.items():
            n = len(entry.get("modalities") or ())
            full = [c["acc"] for c in per.get("coalitions") or () if len(c.get("present") or ()) == n]
            if not full or abs(float(full[0]) - accs_now[s]) > _TOL:
                return f"seed {s}: its full coalition's accuracy is not the run's test accuracy"
    return None


def collect(repo: Path, results: Path, dataset: str, kind: str, history: bool,
            kept: Mapping[str, dict], log=print) -> dict[str, dict]:
    """Archive entries of ``dataset`` for ``kind``: for each committed run, the newest committed
    entry that passes ``mismatch``, else the one ``kept`` from before if it still passes. Each
    entry gains ``source``: {commit, date, device}. Runs with candidates but no passing entry are
    logged with the newest candidate's reason."""
    rel = (results / dataset / f"{kind}.json").relative_to(repo).as_posix()
    now = {p.parent.name: seed_test_accs(json.loads(p.read_text())) for p in sorted((results / dataset).glob("*/results.json"))}
    found: dict[str, dict] = {}
    why: dict[str, str] = {}
    candidates = ((source, data.get("device"), data.get("runs") or {}) for source, data in committed_versions(repo, rel, history))
    old = ((e["source"], e["source"].get("device"), {r: e}) for r, e in kept.items())
    for source, device, entries in [*candidates, *old]:
        for run, entry in entries.items():
            if run not in now or run in found:
                continue
            reason = _check(repo, results, dataset, kind, run, entry, source["commit"], now[run])
            if reason is None:
                found[run] = {**{k: v for k, v in entry.items() if k != "source"}, "source": {**source, "device": device}}
            else:
                why.setdefault(run, f"commit {source['commit'][:8]}: {reason}")
    for run in sorted(set(why) - set(found)):
        log(f"{dataset}/{run}: no {kind} archived ({why[run]})")
    return dict(sorted(found.items()))


def _check(repo: Path, results: Path, dataset: str, kind: str, run: str, entry: Mapping, commit: str,
           accs_now: Mapping[str, float]) -> str | None:
    rel = (results / dataset / run / "results.json").relative_to(repo).as_posix()
    try:
        then = seed_test_accs(json.loads(_git(repo, "show", f"{commit}:{rel}")))
    except subprocess.CalledProcessError:
        then = {}
    return mismatch(kind, {k: v for k, v in entry.items() if k != "source"}, then, accs_now)


def write(path: Path, dataset: str, kind: str, runs: Mapping[str, dict], extra: Mapping) -> None:
    """``results/archive/<dataset>/<kind>.json``: one run per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"dataset": dataset, "kind": kind, **extra, "runs": dict(runs)}
    path.write_text(json_lines(data, depth=2), encoding="utf-8")


def archive(repo: Path, results: Path, out: Path, history: bool, log=print) -> dict[str, int]:
    """Update ``out/<dataset>/<kind>.json`` for every dataset folder of ``results`` with a
    ``<kind>.json``; returns {"<dataset>/<kind>": archived runs}."""
    counts = {}
    for kind in KINDS:
        for current in sorted(results.glob(f"*/{kind}.json")):
            dataset, path = current.parent.name, out / current.parent.name / f"{kind}.json"
            kept = json.loads(path.read_text())["runs"] if path.is_file() else {}
            runs = collect(repo, results, dataset, kind, history, kept, log)
            extra = {"empty_set": json.loads(current.read_text()).get("empty_set")} if kind == "shapley" else {}
            write(path, dataset, kind, runs, {k: v for k, v in extra.items() if v})
            counts[f"{dataset}/{kind}"] = len(runs)
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"), help="the results folder (inside a git work tree)")
    ap.add_argument("--out", type=Path, default=None, help="archive folder (default: <results>/archive)")
    ap.add_argument("--history", action="store_true", help="read every committed version, not only HEAD's")
    args = ap.parse_args(argv)
    results = args.results.resolve()
    try:
        repo = Path(_git(results, "rev-parse", "--show-toplevel").strip())
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{args.results}: not inside a git work tree (the archive reads committed versions)") from None
    counts = archive(repo, results, (args.out or args.results / "archive").resolve(), args.history)
    print(", ".join(f"{k}: {n}" for k, n in counts.items()))


if __name__ == "__main__":
    main()
