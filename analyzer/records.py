"""Frozen, slotted dataclasses that are quick to build and to pickle."""

from __future__ import annotations

import operator
from dataclasses import MISSING, fields
from typing import Any, TypeVar

_T = TypeVar("_T")


def record(cls: type[_T]) -> type[_T]:
    """Make a frozen, slotted dataclass quick to build and to pickle: IR values are made
    by the million (lowering, and loading from worker processes and the fact store), and
    a whole tree's run record holds one per file.
    - Construction: the generated __init__ of a frozen dataclass sets each field with
      object.__setattr__, 2.5 times slower than a plain one; this one sets the slots
      through their descriptors. Assignment after construction still raises.
    - Pickling: as a call of the class with the field values, several times faster to
      load than the per-field state dataclasses give slotted classes."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    env: dict[str, Any] = {f"_set_{n}": getattr(cls, n).__set__ for n in names}
    params = []
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: default factories are not supported")
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    sets = "".join(f"\n    _set_{n}(self, {n})" for n in names)
    exec(f"def __init__(self, {', '.join(params)}):{sets}", env)  # noqa: S102 - fixed text
    env["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = env["__init__"]  # type: ignore[method-assign]

    get = operator.attrgetter(*names)
    one = len(names) == 1  # attrgetter of one name returns the value, not a tuple

    def reduce(self: Any) -> tuple[type[_T], tuple[Any, ...]]:
        return cls, (get(self),) if one else get(self)

    cls.__reduce__ = reduce  # type: ignore[method-assign]
    return cls
