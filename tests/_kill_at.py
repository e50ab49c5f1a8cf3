"""Run a stage script and SIGKILL it at an exact point: right after the n-th call of a function.

    python tests/_kill_at.py MODULE:QUALNAME N SCRIPT [ARGS...]

An external kill timed by polling races on a loaded machine (the run may finish between two
polls); killing from inside, after a chosen call, hits the same state every time.
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import signal
import sys


def _patch(target: str, n: int) -> None:
    """Wrap ``module:Owner.attr`` (or ``module:function``) so the process dies after its n-th call."""
    module_name, qualname = target.split(":")
    *path, attr = qualname.split(".")
    owner = importlib.import_module(module_name)
    for part in path:
        owner = getattr(owner, part)
    original, calls = getattr(owner, attr), [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attr, wrapper)


if __name__ == "__main__":
    target, n, script, *args = sys.argv[1:]
    _patch(target, int(n))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
