"""A small explicit name → factory registry (in the manner of torchvision's ``models/_api.py``)."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; duplicate registrations and unknown look-ups raise."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second use of a name raises ``ValueError``."""

        def wrap(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name: str) -> T:
        """Return the factory for ``name``; an unknown name raises ``KeyError`` listing the choices."""
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; choices: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
