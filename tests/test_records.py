"""records.record: frozen, slotted dataclasses built and pickled through their fields."""

from __future__ import annotations

import dataclasses
import pickle
import pickletools
from dataclasses import dataclass, field

import pytest

from analyzer.model import FileCoverage, SkippedFunction
from analyzer.records import record


@record
@dataclass(frozen=True, slots=True)
class Point:
    x: int
    label: str | None = None


def test_a_record_is_still_a_frozen_dataclass() -> None:
    p = Point(1)
    assert p == Point(1, None) and p.label is None and hash(p) == hash(Point(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    assert dataclasses.replace(p, label="a") == Point(1, "a")


def test_a_record_pickles_as_a_call_of_its_class() -> None:
    """No per-field state: loading builds each object with one call."""
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps([Point(1), Point(2, "b")], proto)
        assert pickle.loads(data) == [Point(1), Point(2, "b")]
        ops = {op.name for op, _arg, _pos in pickletools.genops(data)}
        assert "BUILD" not in ops and "REDUCE" in ops


def test_the_run_records_round_trip() -> None:
    cov = FileCoverage("mm/gup.c", 3, 2, 0, (SkippedFunction("mm/gup.c", "f", 9, "why"),))
    assert pickle.loads(pickle.dumps(cov, pickle.HIGHEST_PROTOCOL)) == cov


def test_default_factories_are_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Bag:
        items: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="Bag.items: default factories are not supported"):
        record(Bag)
