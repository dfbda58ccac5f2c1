"""Moving a reused result's lines with the functions they are in."""

from __future__ import annotations

import pytest

from analyzer.lineshift import LineShift, Move, Unplaced
from analyzer.model import (
    CallEdge,
    Confidence,
    Coverage,
    Finding,
    FunctionFacts,
    Location,
    ModelEvidence,
    RunResult,
    Severity,
    SkippedFunction,
    TraceStep,
)

# mm/a.c: lines 10-20 moved down 3, lines 30-40 stayed; mm/b.c: lines 5-9 moved up 1.
SHIFT = LineShift(
    {"mm/a.c": [Move(30, 40, 0), Move(10, 20, 3)], "mm/b.c": [Move(5, 9, -1)], "mm/c.c": []}
)


def loc(path: str, line: int) -> Location:
    return Location(path, line, 2)


def test_lines_move_with_their_function() -> None:
    assert SHIFT.line("mm/a.c", 10) == 13
    assert SHIFT.line("mm/a.c", 20) == 23
    assert SHIFT.line("mm/a.c", 35) == 35
    assert SHIFT.line("mm/b.c", 9) == 8
    assert SHIFT.line("mm/other.c", 7) == 7, "a file that was not edited"


@pytest.mark.parametrize("line", [9, 21, 29, 41])
def test_a_line_outside_the_moved_functions_is_unplaced(line: int) -> None:
    with pytest.raises(Unplaced):
        SHIFT.line("mm/a.c", line)


def test_an_edited_file_whose_functions_stayed_is_still_checked() -> None:
    still = LineShift({"mm/a.c": [Move(1, 9, 0)]})
    assert still.line("mm/a.c", 5) == 5
    with pytest.raises(Unplaced):
        still.line("mm/a.c", 10)


def test_a_result_moves_everywhere_it_shows_a_line() -> None:
    step = TraceStep(loc("mm/a.c", 12), "f", "page returned by g()")
    finding = Finding(
        "tail-ref-race",
        Severity.WARNING,
        Confidence.HIGH,
        "msg",
        loc("mm/a.c", 15),
        "f",
        (step, TraceStep(loc("mm/b.c", 6), "g", "note")),
        "fp",
    )
    later = Finding(
        "gup-leak", Severity.WARNING, Confidence.HIGH, "m", loc("mm/a.c", 14), "f", (), "fp2"
    )
    facts = FunctionFacts(
        "f",
        loc("mm/a.c", 10),
        20,
        callers=(CallEdge("g", "mm/b.c", loc("mm/b.c", 7), ()),),
        callees=(CallEdge("h", "mm/x.c", loc("mm/a.c", 11), ("pt:ptl",)),),
        callers_known=True,
        entry_locks=(),
        held_by_line=((11, ()), (12, ("pt:ptl",))),
    )
    model = ModelEvidence("folio", "s", "tree", (TraceStep(loc("mm/b.c", 5), "g", "n"),))
    result = RunResult(
        "0", "/t", ("mm",), model, Coverage(()), (finding, later), functions=(facts,)
    )
    moved = SHIFT.result(result)
    assert [f.location.line for f in moved.findings] == [17, 18], "sorted again"
    assert [s.location.line for s in moved.findings[1].trace] == [15, 5]
    assert moved.refcount_model.evidence[0].location.line == 4
    (f,) = moved.functions
    assert (f.location.line, f.end_line) == (13, 23)
    assert [e.location.line for e in (*f.callers, *f.callees)] == [6, 14]
    assert f.held_by_line == ((14, ()), (15, ("pt:ptl",)))
    assert SHIFT.skipped(SkippedFunction("mm/b.c", "g", 5, "budget")).line == 4
