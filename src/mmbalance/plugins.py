"""Import every module of a package so that its registrations run (one file per plug-in)."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str, skip: tuple[str, ...] = ("base",)) -> None:
    """Import ``package.<module>`` for every module in the package, in sorted order."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.ispkg and info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
