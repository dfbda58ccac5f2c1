"""The fixtures harness itself: markers are read exactly, and a wrong expectation fails."""

from __future__ import annotations

from pathlib import Path

from tests.fixture_markers import Marker, fixture_trees, markers


def test_marker_forms(tmp_path: Path) -> None:
    p = tmp_path / "m.c"
    p.write_text(
        "a(); /* expect: tail-ref-race */\n"
        "/* expect@+2: r1, r2 */\n"
        "b(); // ok: tail-ref-race\n"
        "c();\n"
        "d(); /* todo-expect: tail-ref-race */\n"
        "/* expect@-5: r3 */\n"
    )
    assert markers(p) == [
        Marker("expect", 1, "tail-ref-race"),
        Marker("expect", 4, "r1"),
        Marker("expect", 4, "r2"),
        Marker("ok", 3, "tail-ref-race"),
        Marker("todo-expect", 5, "tail-ref-race"),
        Marker("expect", 1, "r3"),
    ]


def test_model_trees_are_separate() -> None:
    trees = fixture_trees()
    roots = {p.name for p in trees}
    assert {"fixtures", "v3.1", "v3.2", "v4.5", "v6.1"} <= roots
    for root, files in trees.items():
        assert files and all(not f.startswith("models/") for f in files), root
