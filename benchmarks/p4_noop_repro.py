"""P4: a no-op ``dvc repro`` (every stage up to date): its time and where the time goes.

Runs only on an up-to-date pipeline (``dvc status`` clean), so nothing is ever reproduced: on a
pipeline with changes it reports that it was skipped. Measures, in interleaved rounds, ``dvc
repro`` as installed and ``dvc repro`` with ruamel.yaml's pure-Python parser (what DVC used
before ``ruamel.yaml.clib`` was a dependency), then one instrumented run that adds up the time
spent in DVC's parts: reading params.yaml for each stage's params dependency, checking file and
directory dependencies and outputs (hashes from DVC's state database), stage read/write locks,
and loading dvc.yaml / dvc.lock. CPU seconds are the ones to compare with the goal: on a busy
machine the wall time also counts waiting for a core.

Usage: python benchmarks/p4_noop_repro.py --repo . [--update reports/performance.md]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import Measurement, median

from mmbalance.system import cpu_model

GOAL_S = 5.0
CARRIED_NOTE = ("> Not re-measured in the latest `make bench`: its pipeline had changes (`dvc status`). "
                "The table below is the previous measurement.")
CARRIED_NOTE_LOCKS = CARRIED_NOTE[:-1] + ", except its lock rewrite rows, which need no up-to-date pipeline."
# rows of the lock rewrite measurements (this layout's and the single lock's earlier wording)
LOCK_ROW_PREFIXES = ("| lock read for update", "| dvc.lock read for update")
SECTION = "## No-op dvc repro"
# this benchmark's section of the report: its heading up to the next heading or the end
SECTION_RE = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
SKIPPED = "skipped: the pipeline has changes (dvc status), a repro would run them"
# a dvc process without ruamel.yaml's C extension: the import of _ruamel_yaml fails
PURE_YAML = "import sys; sys.modules['_ruamel_yaml'] = None; "
RUN_DVC = "from dvc.cli import main; sys.exit(main(sys.argv[1:]))"
# one instrumented run: CPU seconds per part, printed as JSON on stderr's last line
INSTRUMENTED = """
import atexit, functools, json, sys, time
parts = {}
def timed(owner, name, label):
    f = getattr(owner, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            parts[label] = parts.get(label, 0.0) + time.process_time() - t
    setattr(owner, name, g)
import dvc.dependency.param as P, dvc.output as O, dvc.dependency.base as D, dvc.dvcfile as F
timed(P.ParamsDependency, "workspace_status", "params")
timed(O.Output, "workspace_status", "outs_and_file_deps")
timed(D.Dependency, "workspace_status", "file_deps")
timed(F.Lockfile, "load", "dvc_lock")
atexit.register(lambda: print(json.dumps({k: round(v, 3) for k, v in parts.items()}), file=sys.stderr))
"""
PART_LABELS = {
    "params": "params.yaml read and parsed once per stage with a params dependency",
    "file_deps": "file and directory dependencies (state-database hashes)",
    "outs": "outputs (state-database hashes, directory trees)",
    "dvc_lock": "dvc.lock parsed (round-trip YAML)",
    "rest": "start-up, dvc.yaml templating, stage graph, read/write locks",
}


def dvc_cmd(repo: Path, *args: str, prefix: str = "") -> list[str]:
    return [sys.executable, "-c", "import sys; " + prefix + RUN_DVC, *args]


def run_timed(cmd: list[str], repo: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, result)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed in {repo}:\n{res.stderr[-2000:]}")
    return t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), res


def up_to_date(repo: Path) -> bool:
    """True when ``dvc status`` reports no changed stage."""
    _, _, res = run_timed(dvc_cmd(repo, "status", "--json"), repo)
    return json.loads(res.stdout or "{}") == {}


def pipeline_size(repo: Path) -> dict:
    """Stages, file/directory dependencies, params dependencies and outputs of the pipeline."""
    code = ("from dvc.repo import Repo; import json; r = Repo('.'); st = list(r.index.stages); "
            "print(json.dumps({'stages': len(st), "
            "'deps': sum(1 for s in st for d in s.deps if d.__class__.__name__ != 'ParamsDependency'), "
            "'outs': sum(len(s.outs) for s in st)}))")
    return json.loads(subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                                     check=True).stdout)


def breakdown(repo: Path) -> dict[str, float]:
    """CPU seconds per part of one instrumented no-op ``dvc repro`` (``PART_LABELS``)."""
    _, cpu, res = run_timed(dvc_cmd(repo, "repro", prefix=INSTRUMENTED), repo)
    parts = json.loads(res.stderr.strip().splitlines()[-1])
    file_deps = parts.get("file_deps", 0.0)
    out = {"params": parts.get("params", 0.0), "file_deps": file_deps,
           "outs": parts.get("outs_and_file_deps", 0.0) - file_deps, "dvc_lock": parts.get("dvc_lock", 0.0)}
    out["rest"] = max(cpu - sum(out.values()), 0.0)
    return {k: round(v, 2) for k, v in out.items()}


def run(repo: Path, repeats: int) -> list[Measurement]:
    """Interleaved rounds of the no-op repro with the C and the pure-Python YAML parser."""
    if not up_to_date(repo):  # the lock rewrites are measured on any pipeline state
        return [Measurement("P4", "no-op dvc repro", 0.0, "s", None, "", None, SKIPPED), *lock_measurements(repo, repeats)]
    runs = {"c": [], "pure": []}
    for _ in range(repeats):
        for kind, prefix in (("c", ""), ("pure", PURE_YAML)):
            wall, cpu, res = run_timed(dvc_cmd(repo, "repro", prefix=prefix), repo)
            if "up to date" not in res.stdout + res.stderr:
                raise RuntimeError(f"dvc repro in {repo} was not a no-op:\n{res.stdout[-2000:]}")
            runs[kind].append((wall, cpu))
    size = pipeline_size(repo)
    cpu = median([c for _, c in runs["c"]])
    pure_cpu = median([c for _, c in runs["pure"]])
    parts = breakdown(repo)
    out = [Measurement("P4", "no-op dvc repro (CPU)", cpu, "s", cpu, "s CPU", ("<=", GOAL_S),
                       f"{cpu_model()}; {size['stages']} stages, {size['deps']} file/dir deps, {size['outs']} outputs; wall "
                       f"{median([w for w, _ in runs['c']]):.1f} s; median of {repeats}"),
           Measurement("P4", "same, pure-Python YAML parser", pure_cpu, "s", pure_cpu / cpu, "× with C parser", None,
                       "ruamel.yaml without ruamel.yaml.clib (DVC reads params.yaml once per stage)")]
    out += [Measurement("P4", f"  {PART_LABELS[k]}", v, "s CPU", v / cpu, "of total", None, "one instrumented run")
            for k, v in parts.items()]
    return out + lock_measurements(repo, repeats)


def lock_texts(repo: Path) -> dict[str, str]:
    """The lock files a stage's run rewrites: the largest per-dataset training lock
    (pipelines/<dataset>/dvc.lock), the top-level dvc.lock, and every entry of all of them in one
    lock (the layout before the training stages had files of their own), for comparison."""
    import yaml

    locks = [repo / "dvc.lock", *sorted(repo.glob("pipelines/*/dvc.lock"))]
    texts = {str(p.relative_to(repo)): p.read_text() for p in locks if p.is_file()}
    merged = {"schema": "2.0", "stages": {}}
    for text in texts.values():
        merged["stages"].update((yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get("stages") or {})
    training = {k: v for k, v in texts.items() if k != "dvc.lock"}
    out = {}
    if training:
        largest = max(training, key=lambda k: len(training[k]))
        out[f"largest training lock ({largest})"] = training[largest]
    if "dvc.lock" in texts:
        out["top-level dvc.lock"] = texts["dvc.lock"]
    out["all entries in one lock"] = yaml.safe_dump(merged, sort_keys=False)
    return out


def lock_rewrite_seconds(text: str, repeats: int) -> float:
    """CPU seconds of what DVC does to a lock file after each stage it runs: a round-trip parse
    (ruamel.yaml's pure-Python 'rt' mode, which keeps comments and order) and a dump."""
    import io

    from dvc.utils.serialize._yaml import parse_yaml_for_update
    from ruamel.yaml import YAML

    times = []
    for _ in range(repeats):
        start = time.process_time()
        YAML().dump(parse_yaml_for_update(text, "dvc.lock"), io.StringIO())
        times.append(time.process_time() - start)
    return median(times)


def lock_measurements(repo: Path, repeats: int) -> list[Measurement]:
    """One row per lock of ``lock_texts``, measured in interleaved rounds; ratios against the
    single lock holding every entry."""
    texts = lock_texts(repo)
    runs = {k: [] for k in texts}
    for _ in range(repeats):
        for label, text in texts.items():
            runs[label].append(lock_rewrite_seconds(text, 1))
    one = median(runs["all entries in one lock"])
    return [Measurement("P4", f"lock read for update and written back, once: {label}", median(times), "s CPU",
                        median(times) / one, "× one lock", None,
                        f"{len(texts[label].splitlines())} lines; DVC does this after every stage a `dvc repro` or "
                        f"`dvc commit` runs, to the lock beside the stage's dvc.yaml; median of {repeats}")
            for label, times in runs.items()]


def render(results: list[Measurement]) -> str:
    """The report section (appended to reports/performance.md by run.py or ``--update``)."""
    lines = [SECTION, "", "`benchmarks/p4_noop_repro.py`: `dvc repro` with every stage up to date, on this",
             "repository's pipeline. The CPU time is what a 2-core machine with nothing else running waits.", "",
             "| measurement | value | ratio | goal | verdict | notes |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + table_rows(results)) + "\n"


def table_rows(results: list[Measurement]) -> list[str]:
    """One markdown table row per measurement."""
    rows = []
    for m in results:
        goal = "—" if m.goal is None else f"{m.goal[0]} {m.goal[1]:g} s"
        verdict = {True: "**PASS**", False: "**FAIL**", None: "info"}[m.passed]
        ratio = "—" if m.ratio is None else f"{m.ratio:.2f} ({m.ratio_label})"
        rows.append(f"| {m.name} | {m.value:.1f} {m.unit} | {ratio} | {goal} | {verdict} | {m.note} |")
    return rows


def previous_section(path: Path) -> str | None:
    """This benchmark's section as ``path`` holds it now, marked as carried over (a run on a
    pipeline with changes measures nothing and keeps the last measurement), or None."""
    found = SECTION_RE.search(path.read_text() if path.exists() else "")
    if found is None:
        return None
    body = found.group(0).rstrip("\n").split("\n", 1)[1]
    note = f"\n{CARRIED_NOTE}\n"
    return SECTION + "\n" + (body if "Not re-measured" in body else note + body) + "\n"


def report_section(results: list[Measurement], path: Path) -> str:
    """The section for ``results``. When the no-op repro was skipped: the section ``path``
    already holds (marked as carried over), if it has one, with its lock rewrite rows replaced
    by the ones just measured."""
    skipped = any(m.note == SKIPPED for m in results)
    previous = previous_section(path) if skipped else None
    if previous is None:
        return render(results)
    fresh = [m for m in results if m.note != SKIPPED]
    kept = [line for line in previous.rstrip("\n").split("\n") if not line.startswith(LOCK_ROW_PREFIXES)]
    if fresh:
        kept[-1:] = [kept[-1], *table_rows(fresh)] if kept[-1].startswith("|") else [kept[-1], "", *table_rows(fresh)]
    return "\n".join(kept).replace(CARRIED_NOTE, CARRIED_NOTE_LOCKS) + "\n"


def update_report(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (or append it), leaving the rest as it is."""
    text = path.read_text() if path.exists() else ""
    text = SECTION_RE.sub(lambda _: section + "\n", text) if SECTION_RE.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path("."), help="the DVC repository (its pipeline up to date)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update", type=Path, default=None, help="report whose no-op section to replace")
    ap.add_argument("--locks-only", action="store_true", help="only the lock rewrite rows (any pipeline state); no report")
    args = ap.parse_args()
    if args.locks_only:
        for m in lock_measurements(args.repo.resolve(), args.repeats):
            print(m.as_dict())
        return
    results = run(args.repo.resolve(), args.repeats)
    for m in results:
        print(m.as_dict())
    if args.update is not None:
        update_report(args.update, report_section(results, args.update))
        print(f"updated {args.update}")


if __name__ == "__main__":
    main()
