"""Moving the lines of a result with the functions they are in.

A warm run reuses the last run's findings when its edits cannot change them (see
engine._reuse): an edit outside the functions whose bodies the analyses read, or one
that moves those functions without changing their text. Every line such a result shows
in an edited file lies in one of those functions (the analyses read a function's body to
say anything about its lines), and moves with it.
"""

from __future__ import annotations

import bisect
import dataclasses

from analyzer.model import (
    CallEdge,
    Finding,
    FunctionFacts,
    Location,
    RunResult,
    SkippedFunction,
    TraceStep,
)


class Unplaced(Exception):
    """A line of an edited file that lies in none of the functions moved."""


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """The lines `first` to `last` of a file (a function's) moved by `by`."""

    first: int
    last: int
    by: int


class LineShift:
    """The moves of the read functions of the edited files: path -> moves."""

    def __init__(self, moves: dict[str, list[Move]]) -> None:
        self._moves = {path: sorted(ms, key=lambda m: m.first) for path, ms in moves.items()}
        self._starts = {path: [m.first for m in ms] for path, ms in self._moves.items()}

    def line(self, path: str, line: int) -> int:
        moves = self._moves.get(path)
        if moves is None:
            return line
        i = bisect.bisect_right(self._starts[path], line) - 1
        if i < 0 or line > moves[i].last:
            raise Unplaced(f"{path}:{line}")
        return line + moves[i].by

    def location(self, loc: Location) -> Location:
        line = self.line(loc.path, loc.line)
        return loc if line == loc.line else dataclasses.replace(loc, line=line)

    def step(self, s: TraceStep) -> TraceStep:
        return dataclasses.replace(s, location=self.location(s.location))

    def finding(self, f: Finding) -> Finding:
        return dataclasses.replace(
            f, location=self.location(f.location), trace=tuple(map(self.step, f.trace))
        )

    def edge(self, e: CallEdge) -> CallEdge:
        return dataclasses.replace(e, location=self.location(e.location))

    def facts(self, f: FunctionFacts) -> FunctionFacts:
        path = f.location.path
        return dataclasses.replace(
            f,
            location=self.location(f.location),
            end_line=self.line(path, f.end_line),
            callers=tuple(map(self.edge, f.callers)),
            callees=tuple(map(self.edge, f.callees)),
            held_by_line=tuple((self.line(path, n), held) for n, held in f.held_by_line),
        )

    def skipped(self, s: SkippedFunction) -> SkippedFunction:
        return dataclasses.replace(s, line=self.line(s.path, s.line))

    def result(self, r: RunResult) -> RunResult:
        """`r` with its lines moved; raises Unplaced."""
        model = r.refcount_model
        return dataclasses.replace(
            r,
            refcount_model=dataclasses.replace(
                model, evidence=tuple(map(self.step, model.evidence))
            ),
            findings=tuple(sorted(map(self.finding, r.findings), key=lambda f: f.sort_key)),
            functions=tuple(map(self.facts, r.functions)),
        )
