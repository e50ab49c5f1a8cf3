"""What produced a report: code revision, parameters hash and the machine."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNKNOWN = "unknown"


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


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``/machine."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def device_name() -> str:
    """The accelerator's name when torch is already imported and sees a CUDA device, else the CPU model.

    torch is never imported here (the report stage does not need it); a training stage that
    has imported it gets its GPU's name.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return str(torch.cuda.get_device_name(0))
        except Exception:  # a broken CUDA set-up still has a CPU to report
            pass
    return cpu_model()
