"""Train several benchmark datasets at once on the DVC queue, then bring the results home.

``dvc repro`` runs one stage at a time, and DVC lets only one command work in a repository at
once. DVC's own way to use more cores is its experiment queue: each queued experiment runs in a
temporary copy of the repository, ``dvc queue start -j N`` runs N of them side by side, and each
finished one is a git commit of its own (``dvc exp show``). Each benchmark dataset's training
stages have a ``dvc.yaml`` and ``dvc.lock`` of their own (``pipelines/<dataset>/``), so a dataset
is one experiment, ``train-<dataset>``, whose target is that file.

``collect`` then brings each finished experiment into the workspace: its ``dvc.lock`` for the
dataset, the ``cache: false`` outputs its commit holds (results, curves, predictions), and the
cached ones (the trained models) from the DVC cache the experiments share with the workspace
(``dvc checkout``). ``dvc status`` then finds those stages up to date, and a ``dvc repro``
afterwards runs only what is left (evaluation, costs, the report, ...).
``dvc exp apply`` cannot do this job: it replaces the whole workspace with one experiment's.

    python -m mmbalance.queue run -j 4 --wait          # every dataset of params benchmark
    python -m mmbalance.queue run --datasets cremad ave -j 2
    python -m mmbalance.queue collect                  # after `dvc queue status` shows Success
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path


def pipeline_file(dataset: str) -> str:
    """The ``dvc.yaml`` holding the dataset's training stages (``make pipelines`` writes it)."""
    return f"pipelines/{dataset}/dvc.yaml"


def experiment_name(dataset: str) -> str:
    """The experiment a dataset's queued training runs as (a valid git ref component)."""
    return f"train-{dataset}"


def run_cmd(args: list[str], cwd: Path | None = None, binary: bool = False):
    """Run a command; its stdout, or a RuntimeError carrying the end of its stderr."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=not binary)
    if proc.returncode != 0:
        err = proc.stderr if not binary else proc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return proc.stdout


def queue_targets(named_targets: dict[str, str], jobs: int, cwd: Path | None = None, start: bool = True) -> list[str]:
    """Queue each ``{experiment name: dvc target}`` as its own experiment (an earlier experiment
    of that name on this commit is replaced) and start ``jobs`` workers."""
    # `dvc exp run --force` would also re-run the upstream stages (generate, prepare): remove an
    # earlier experiment of the same name instead (a name that does not exist is fine)
    for name in named_targets:
        subprocess.run(["dvc", "exp", "remove", name], cwd=cwd, capture_output=True)
    for name, target in named_targets.items():
        run_cmd(["dvc", "exp", "run", "--queue", "--name", name, target], cwd)
    if start:
        run_cmd(["dvc", "queue", "start", "--jobs", str(int(jobs))], cwd)
    return list(named_targets)


def wait(cwd: Path | None = None, timeout_s: float = 24 * 3600, poll_s: float = 2.0) -> str:
    """Block until no experiment is queued or running; ``dvc queue status``'s last output."""
    deadline = time.time() + timeout_s
    while True:
        status = run_cmd(["dvc", "queue", "status"], cwd)
        if "Queued" not in status and "Running" not in status:
            return status
        if time.time() > deadline:
            raise TimeoutError(f"queued experiments still running after {timeout_s:.0f} s:\n{status}")
        time.sleep(poll_s)


def experiment_revs(cwd: Path | None = None) -> dict[str, str]:
    """Experiment name → commit of every experiment on the current commit (``dvc exp show --json``).
    Queued, running and failed ones have no commit yet and are left out."""
    rows = json.loads(run_cmd(["dvc", "exp", "show", "--json", "--no-fetch"], cwd) or "[]")
    out = {}
    for row in rows:
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name, sha = rev.get("name"), rev.get("rev")
                if name and sha and len(sha) == 40 and rev.get("error") is None:
                    out.setdefault(name, sha)
    return out


def copy_outputs(sha: str, outs: Sequence[str], cwd: Path | None = None) -> list[str]:
    """Replace each of ``outs`` in the workspace by the experiment commit's copy, for those the
    commit holds (``cache: false`` outputs; cached ones are in the DVC cache instead). Returns
    the outputs copied."""
    root = Path(cwd or ".")
    # without -r, ls-tree lists each named path the commit holds (a folder as one entry)
    held = set(run_cmd(["git", "ls-tree", "--name-only", sha, "--", *outs], cwd).split()) if outs else set()
    present = [o for o in outs if o in held]
    for out in present:  # replace each output as a whole, like a stage run does
        target = root / out
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if present:
        archive = run_cmd(["git", "archive", "--format=tar", sha, "--", *present], cwd, binary=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
    return present


def collect_dataset(dataset: str, sha: str, cwd: Path | None = None) -> int:
    """One finished dataset experiment into the workspace: its pipeline's ``dvc.lock``, the
    outputs its commit holds, then ``dvc checkout`` of the pipeline (the cached outputs).
    Returns the number of stages collected."""
    from dvc.utils.serialize import loads_yaml

    root = Path(cwd or ".")
    lock = str(Path(pipeline_file(dataset)).with_name("dvc.lock"))
    text = run_cmd(["git", "show", f"{sha}:{lock}"], cwd)
    stages = (loads_yaml(text) or {}).get("stages") or {}
    copy_outputs(sha, [o["path"] for entry in stages.values() for o in entry.get("outs") or []], cwd)
    (root / lock).write_text(text)
    run_cmd(["dvc", "checkout", pipeline_file(dataset)], cwd)
    return len(stages)


def collect(datasets: Sequence[str], cwd: Path | None = None) -> dict[str, int]:
    """Collect every dataset whose experiment has finished; dataset → stages collected.
    Datasets without a finished experiment are skipped (and reported by the CLI)."""
    revs = experiment_revs(cwd)
    return {ds: collect_dataset(ds, revs[experiment_name(ds)], cwd) for ds in datasets if experiment_name(ds) in revs}


def start(named_targets: dict[str, str], jobs: int, watched: Sequence[str], wait_for: bool) -> bool:
    """The queue commands' first step: warn when ``watched`` paths have uncommitted changes
    (queued runs start from the last commit), queue ``named_targets``, start ``jobs`` workers and,
    with ``wait_for``, wait for them. Returns whether to collect now."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *watched], capture_output=True, text=True).stdout.strip()
    if dirty:
        print(f"warning: queued experiments start from the last commit, without these changes:\n{dirty}", file=sys.stderr)
    names = queue_targets(named_targets, jobs)
    print(f"queued {len(names)} experiments: {', '.join(names)}; `dvc queue status` to follow")
    if wait_for:
        print(wait())
    return wait_for


def finish(summary: str, missing: Sequence[str]) -> None:
    """The collect step's last words: ``summary``, then the names without a finished experiment
    (exit status 1 if any)."""
    print(summary)
    if missing:
        print(f"no finished experiment for: {', '.join(missing)} (`dvc queue status`, `dvc queue logs <name>`)",
              file=sys.stderr)
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbalance.queue", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("run", "queue each dataset's training stages as an experiment and start the workers"),
                       ("collect", "bring finished dataset experiments (lock, outputs, models) into the workspace")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--datasets", nargs="*", default=None, help="default: every dataset of params benchmark")
        p.add_argument("--params", type=Path, default=Path("params.yaml"))
    r = sub.choices["run"]
    r.add_argument("-j", "--jobs", type=int, default=2, help="experiments side by side (dvc queue start -j)")
    r.add_argument("--wait", action="store_true", help="wait for the queue to finish, then collect")
    args = ap.parse_args(argv)

    from mmbalance.params import load_params, lookup

    datasets = args.datasets or list(lookup(load_params(args.params), "benchmark"))
    if args.command == "run" and not start({experiment_name(ds): pipeline_file(ds) for ds in datasets}, args.jobs,
                                           ["params.yaml", "dvc.yaml", "dvc.lock", "pipelines"], args.wait):
        return
    done = collect(datasets)
    finish(f"collected {sum(done.values())} training stages of {len(done)} datasets: {', '.join(done) or 'none'}",
           [experiment_name(ds) for ds in datasets if ds not in done])


if __name__ == "__main__":
    main()
