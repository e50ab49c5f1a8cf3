"""The README and docs/ stay true: every shell command shown runs (or a cheap form of it does),
every relative link resolves, the method shown in full is the file in the repository, and adding
a method takes one file plus one params block.

Commands come from the ```bash / ```sh / ```console blocks of README.md and docs/*.md (in console
blocks only the ``$ `` lines). A command runs as written only when it is cheap and changes
nothing; every other one is listed in ``NOT_RUN_AS_WRITTEN`` with the reason and runs in a
cheaper form instead (``make -n``, ``--help`` with every option shown checked against it, the
validate check on the mini data). A command in no list fails the test, so a new one in the docs
has to be placed.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
BIN = Path(sys.executable).parent  # the environment the tests run in (make test: .venv/bin)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

# Commands run exactly as written: cheap, and they change nothing.
RUN_AS_WRITTEN = {
    "source .venv/bin/activate": "checks that the environment `make` creates is there",
    "python benchmarks/run.py --help": "prints the benchmark options",
    "python benchmarks/default_budget.py --table": "reads the committed results; trains nothing",
}

# Commands not run as written (keyed by their leading words): why, and what runs instead.
NOT_RUN_AS_WRITTEN = {
    "make repro": "long-running: the whole mini benchmark (~41 min) → `make -n repro`",
    "make test": "long-running: the whole test suite, this file included → `make -n test`",
    "make bench": "long-running: ~5 min of throughput benchmarks → `make -n bench`",
    "make profile": "rewrites params.yaml → `make -n profile …` and the profile file exists",
    "dvc repro": "long-running: trains every stage that is not cached → `--help`, options, stage targets",
    "dvc exp run": "trains a model → `--help`, options, `-S` keys in params.yaml, stage targets",
    "dvc exp show": "takes the repository lock other dvc commands may hold → `--help` and options",
    "dvc metrics show": "takes the repository lock other dvc commands may hold → `--help` and options",
    "dvc plots show": "renders every plot into dvc_plots/ → `--help` and options",
    "dvc queue start": "starts training workers → `--help` and options",
    "dvc queue status": "takes the repository lock other dvc commands may hold → `--help` and options",
    "dvc queue logs": "needs a queued experiment → `--help` and options",
    "python stages/validate.py": "real data: the documented roots are real dataset folders → "
                                 "the same command on the mini data in data/raw/<dataset>, layout only "
                                 "(the media check that decodes every clip is tests/test_validate.py's)",
    "python stages/evaluate.py": "long-running: scores every trained model → `--help` and options",
    "python stages/report.py": "long-running: recomputes every statistic and rewrites reports/ → `--help` and options",
    "python benchmarks/gpu_step.py": "GPU: needs CUDA → `--help` and options",
    "python benchmarks/default_budget.py --compare": "long-running: trains each run twice on the prepared shards → "
                                                     "`--help` and options",
    "python -m mmbalance.tune queue": "long-running: trains the tune stages on the DVC queue → `--help` and options",
    "python -m mmbalance.tune collect": "needs finished queued experiments → `--help` and options",
    "python -m mmbalance.report.archive": "rewrites results/archive/ from the committed costs and Shapley "
                                            "files → `--help` and options",
    "python -m mmbalance.queue run": "long-running: trains every dataset on the DVC queue → `--help` and options",
    ".venv/bin/python -m pytest": "long-running: a whole test file → `--collect-only`",
}


# ----------------------------------------------------------------------------- extraction


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def shell_commands(lang: str, body: str) -> list[list[str]]:
    """Commands of one block as token lists: continuation lines joined, comments and prompt-less
    console output dropped, ``a && b`` split in two."""
    lines = body.splitlines()
    if lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined, buf = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    out = []
    for line in joined:
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            out.append(tokens[:cut])
            tokens = tokens[cut + 1:]
    return [t for t in out if t]


def documented_commands() -> dict[str, str]:
    """{command: the doc file that shows it first}."""
    found: dict[str, str] = {}
    for path in DOC_FILES:
        for lang, body in code_blocks(path.read_text()):
            if lang in SHELL_LANGS:
                for tokens in shell_commands(lang, body):
                    found.setdefault(shlex.join(tokens), path.relative_to(ROOT).as_posix())
    return found


COMMANDS = documented_commands()


def listed_key(command: str) -> str | None:
    """The longest key of the two lists that ``command`` starts with (whole words)."""
    keys = [k for k in (*RUN_AS_WRITTEN, *NOT_RUN_AS_WRITTEN) if command == k or command.startswith(k + " ")]
    return max(keys, key=len, default=None)


# ----------------------------------------------------------------------------- running


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``argv`` in the repository root; assert a zero exit status."""
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@functools.lru_cache(maxsize=None)
def help_text(argv: tuple[str, ...]) -> str:
    """``argv --help`` output (cached: several documented commands share one)."""
    return run([*argv, "--help"]).stdout


def assert_options_known(argv: list[str], command_words: int) -> None:
    """Every option of ``argv`` appears in the help of its first ``command_words`` words."""
    head, rest = argv[:command_words], argv[command_words:]
    text = help_text(tuple(head))
    for token in rest:
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
                f"{shlex.join(argv)}: option {option} is not in `{shlex.join(head)} --help`"


def python(argv: list[str]) -> list[str]:
    """A documented ``python …`` command with this environment's interpreter."""
    return [sys.executable, *argv[1:]]


def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def stage_names(dvcfile: str = "dvc.yaml") -> set[str]:
    """Top-level stage names of a dvc.yaml (a target ``name@item`` names an item of ``name``)."""
    return set(yaml.safe_load((ROOT / dvcfile).read_text())["stages"])


def check_target(token: str, command: str) -> None:
    """A ``dvc repro`` / ``dvc exp run`` target: a stage of dvc.yaml, another dvc.yaml, or
    ``<path>/dvc.yaml:<stage>``."""
    path, sep, name = token.rpartition(":") if ":" in token else ("", "", token)
    if token.endswith("dvc.yaml"):
        path, name = token, ""
    dvcfile = path or "dvc.yaml"
    assert (ROOT / dvcfile).is_file(), f"{command}: no file {dvcfile}"
    if name:
        assert name.split("@")[0] in stage_names(dvcfile), f"{command}: no stage {name} in {dvcfile}"


def check_make(tokens: list[str]) -> None:
    run(["make", "-n", *tokens[1:]])
    for token in tokens[1:]:
        if token.startswith("PROFILE="):
            assert (ROOT / "profiles" / f"{token.split('=', 1)[1]}.yaml").is_file(), token


def check_dvc(tokens: list[str]) -> None:
    """``dvc <command> --help`` knows every option; ``-S`` keys exist in params.yaml (``method``
    names a block under ``methods``); positional stage targets exist in dvc.yaml."""
    words = 3 if tokens[1] in {"exp", "experiments", "queue", "metrics", "plots", "stage", "params"} else 2
    dvc = shutil.which("dvc", path=ENV["PATH"])
    assert dvc, "dvc is not installed in this environment"
    assert_options_known([dvc, *tokens[1:]], words)
    p, rest = params(), tokens[words:]
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "-S":
            key, value = rest[i + 1].split("=", 1)
            node = p
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{shlex.join(tokens)}: no param {key} in params.yaml"
                node = node[part]
            if key == "method":
                assert value in p["methods"], f"{shlex.join(tokens)}: no block methods.{value} in params.yaml"
            if key == "dataset":
                assert value in p["datasets"], f"{shlex.join(tokens)}: no dataset {value} in params.yaml"
            i += 2
            continue
        if token in {"-j", "--jobs", "-n", "--name"}:
            i += 2
            continue
        if not token.startswith("-") and tokens[1:words] in (["repro"], ["exp", "run"]):
            check_target(token, shlex.join(tokens))
        i += 1


def check_validate(tokens: list[str]) -> None:
    """The documented check, on the mini data of the same dataset."""
    dataset = tokens[tokens.index("--dataset") + 1]
    mini = ROOT / "data" / "raw" / dataset
    if not mini.is_dir():
        pytest.skip(f"no mini {dataset} in data/raw/ yet (written by `make repro`)")
    argv = python(tokens)
    argv[argv.index("--root") + 1] = str(mini)
    assert run([*argv, "--layout-only"]).stdout.startswith(f"{dataset} at ")


def check_python(tokens: list[str], key: str) -> None:
    """A documented ``python …`` command in its cheap form (see ``NOT_RUN_AS_WRITTEN``)."""
    if key == "python stages/validate.py":
        check_validate(tokens)
    elif key == ".venv/bin/python -m pytest":
        run([sys.executable, *tokens[1:], "--collect-only", "-q"])
    else:
        assert_options_known(python(tokens), len(key.split()))


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: c[:60])
def test_documented_command_runs(command):
    tokens = shlex.split(command)
    key = listed_key(command)
    assert key, (f"{COMMANDS[command]}: `{command}` is in neither RUN_AS_WRITTEN nor NOT_RUN_AS_WRITTEN "
                 "of tests/test_docs.py; add it to one, with the reason")
    if key == "source .venv/bin/activate":
        if not (ROOT / ".venv/bin/activate").is_file():
            pytest.skip("no .venv yet (created by `make repro` / `make test`)")
        run(["bash", "-c", command])
    elif key in RUN_AS_WRITTEN:
        run(python(tokens) if tokens[0] == "python" else tokens)
    elif tokens[0] == "make":
        check_make(tokens)
    elif tokens[0] == "dvc":
        check_dvc(tokens)
    else:
        check_python(tokens, key)


def test_lists_name_only_documented_commands():
    """No stale entries: every listed command still appears in the docs."""
    used = {listed_key(c) for c in COMMANDS}
    assert set(RUN_AS_WRITTEN) | set(NOT_RUN_AS_WRITTEN) <= used, \
        sorted((set(RUN_AS_WRITTEN) | set(NOT_RUN_AS_WRITTEN)) - used)


# ----------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    """Link targets of ``path`` outside code, without http(s)/mailto ones."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260, "README.md is the front door: move detail to docs/"


def test_stated_run_counts_match_params():
    """"N runs × S seeds" for the default in README.md and docs/profiles.md is params.yaml's."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    runs, seeds = sum(len(v) for v in params["benchmark"].values()), len(params["seeds"])
    for doc in (ROOT / "README.md", ROOT / "docs" / "profiles.md"):
        stated = re.findall(r"(\d+) runs × (\d+) seeds", doc.read_text())
        assert stated, f"{doc.name} states no 'N runs × S seeds'"
        assert (str(runs), str(seeds)) == stated[0], f"{doc.name} states {stated[0]}; params.yaml has {runs} runs × {seeds} seeds"


# ----------------------------------------------------------------------------- adding a method

EXAMPLE = ROOT / "src/mmbalance/methods/unimodal_loss.py"


def readme_example() -> str:
    """The method file the README shows in full (its ```python block)."""
    blocks = [body for lang, body in code_blocks((ROOT / "README.md").read_text()) if lang == "python"]
    assert len(blocks) == 1, "README.md should show exactly one python block: the example method"
    return blocks[0]


def test_readme_shows_the_example_method_file_verbatim():
    assert readme_example() == EXAMPLE.read_text(), \
        f"the example in README.md ('Adding a method') differs from {EXAMPLE.relative_to(ROOT)}: copy the file in"


def test_a_new_method_is_one_file_plus_one_params_block(tmp_path):
    """In a copy of the package, the README's example under a new name plus a `methods.<name>`
    block (and a benchmark entry) is all it takes: the registry-driven tests collect the new
    name and pass for it."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests").mkdir()
    for name in ("conftest.py", "test_methods.py", "test_registry.py"):
        shutil.copy(ROOT / "tests" / name, tmp_path / "tests" / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # the one file
    source = readme_example().replace('METHODS.register("unimodal_loss")', 'METHODS.register("doc_example")')
    assert 'register("doc_example")' in source
    (tmp_path / "src/mmbalance/methods/doc_example.py").write_text(source)
    # the one params block (+ the benchmark list entry that trains it)
    p = params()
    p["methods"]["doc_example"] = {"weight": 0.5}
    p["benchmark"]["cremad"].append("doc_example")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    env = {**ENV, "PYTHONPATH": str(tmp_path / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/test_methods.py",
         "tests/test_registry.py", "-k", "doc_example or blocks_match_registry"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = set(re.findall(r"^PASSED (\S+)", out, re.M))
    assert {"tests/test_methods.py::test_one_step_every_parameter_gets_a_finite_gradient[doc_example]",
            "tests/test_methods.py::test_fit_two_epochs[doc_example]",
            "tests/test_registry.py::test_params_method_blocks_match_registry"} <= passed, out[-4000:]
    assert str(tmp_path / "src") in subprocess.run(
        [sys.executable, "-c", "import mmbalance.methods as m; print(m.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True).stdout, "the copy, not the installed package, was tested"
