"""``lazy``: a cached property built once per instance even when threads race for it.

The CLI builds only what a command touches (a `similar` never opens the events database), and
the HTTP server shares those same objects between threads, so the first build must happen once.
``functools.cached_property`` lost its lock in Python 3.12, and in 3.11 its class-wide lock per
property can deadlock when one property's build reads another; one re-entrant lock per instance
has neither problem.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

_LOCK = "_lazy_lock"


class lazy(Generic[T]):
    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> lazy[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> T | lazy[T]:
        if obj is None:
            return self
        values = obj.__dict__
        if self.name in values:  # only the first access of each instance reaches here
            return values[self.name]
        with values.setdefault(_LOCK, threading.RLock()):  # dict.setdefault is atomic
            if self.name not in values:
                values[self.name] = self.build(obj)
            return values[self.name]


def is_built(obj: object, name: str) -> bool:
    """Whether ``obj``'s lazy ``name`` was built (close only what was opened)."""
    return name in obj.__dict__
