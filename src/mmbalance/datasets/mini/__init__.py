"""Synthetic "mini" datasets written in the native layout of the real ones."""

from __future__ import annotations

from collections.abc import Callable

from mmbalance.registry import Registry

__all__ = ["GENERATORS", "get_generator", "list_generators", "register_generator"]

GENERATORS: Registry = Registry("generator")


def register_generator(name: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Function decorator registering a generator under ``name`` (duplicates raise ValueError)."""
    return GENERATORS.register(name)


def get_generator(name: str) -> Callable[..., dict]:
    """The generator function registered as ``name`` (unknown names raise KeyError listing choices)."""
    return GENERATORS.get(name)


def list_generators() -> list[str]:
    """Sorted names of the registered generators."""
    return GENERATORS.names()


# One generator per module, imported last: each registers itself with the decorator above.
from mmbalance.plugins import import_submodules  # noqa: E402

import_submodules(__name__)
