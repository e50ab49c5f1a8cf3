"""Synthetic "mini" datasets written in the native layout of the real ones.

Generator registry in the same style as the dataset registry: a dict of name -> function.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["get_generator", "list_generators", "register_generator"]

_GENERATORS: dict[str, Callable[..., dict]] = {}


def register_generator(name: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Function decorator registering a generator under ``name`` (duplicates raise ValueError)."""

    def wrapper(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in _GENERATORS:
            raise ValueError(f"a generator is already registered under the name {name!r}")
        _GENERATORS[name] = fn
        return fn

    return wrapper


def get_generator(name: str) -> Callable[..., dict]:
    """The generator function registered as ``name`` (unknown names raise KeyError)."""
    if name not in _GENERATORS:
        raise KeyError(f"unknown generator {name!r}; choices: {list_generators()}")
    return _GENERATORS[name]


def list_generators() -> list[str]:
    """Sorted names of the registered generators."""
    return sorted(_GENERATORS)


# Imported last: the module registers itself with the decorator defined above.
from mmbalance.datasets.mini import cremad  # noqa: E402, F401
