"""What produced a report: code revision, parameters hash and the machine."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mmbalance.system import UNKNOWN, cpu_model, device_name  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Provenance:
    """Code revision, a hash of the parameters file and the machine that rendered the report."""

    git_rev: str = UNKNOWN
    params_hash: str = UNKNOWN
    device: str = UNKNOWN


def params_hash(path: str | Path, length: int = 12) -> str:
    """First ``length`` hex digits of the sha256 of the file at ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def git_revision(cwd: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` run in ``cwd``, or "unknown" if git or a commit is missing."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return out.stdout.strip() or UNKNOWN
