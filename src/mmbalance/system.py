"""The machine a stage runs on: CPU model and accelerator name (recorded with every result)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

UNKNOWN = "unknown"


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
