"""The fact store: a warm run gives what a cold run gives, after any edit that matters,
and survives damage and a killed process."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import engine, factstore
from analyzer.cli import main
from analyzer.factstore import DB_NAME, FactStore
from analyzer.model import RunResult
from analyzer.program.tree import TreeError
from analyzer.report.json_report import render_json
from analyzer.rules import loader
from tests.fixture_markers import FIXTURES

V31 = FIXTURES / "models" / "v3.1"
V32 = FIXTURES / "models" / "v3.2"


class Recorder:
    """Counts the files the front end lowers and the runs that analyze, and collects the
    store's warnings."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lowered: list[str] = []
        self.analyses = 0
        self.warnings: list[str] = []
        parse, analyze = engine.parse_bytes, engine._analyze

        def counting(data: bytes, rel: str) -> object:
            self.lowered.append(rel)
            return parse(data, rel)

        def analyzing(*args: object) -> object:
            self.analyses += 1
            return analyze(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(engine, "parse_bytes", counting)
        monkeypatch.setattr(engine, "_analyze", analyzing)

    def store(self, directory: Path) -> FactStore:
        return FactStore(directory, self.warnings.append)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return Recorder(monkeypatch)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    # Sources older than the racy window, as a checkout is: their stat entries are kept.
    old = time.time() - 60
    for p in dst.rglob("*"):
        os.utime(p, (old, old))
    return dst


def scan(tree: Path, store: FactStore | None, paths: list[str] | None = None) -> RunResult:
    result = engine.scan(tree, paths, store=store)
    if store is not None:
        store.close()
    return result


def same(a: RunResult, b: RunResult) -> bool:
    return render_json(a) == render_json(b)


def test_warm_run_reads_the_store_and_matches_cold(tmp_path: Path, rec: Recorder) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    cold = scan(tree, None)
    rec.lowered.clear()
    first = scan(tree, rec.store(tmp_path / "c"))
    assert same(first, cold) and cold.findings
    assert "fs/direct-io.c" in rec.lowered
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert same(warm, cold)
    assert rec.lowered == [], "nothing is lowered again"
    assert rec.warnings == []


def test_only_changed_files_are_lowered_again(tmp_path: Path, rec: Recorder) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    scan(tree, rec.store(tmp_path / "c"))
    target = tree / "mm" / "follow_ref.c"
    target.write_text(target.read_text() + "\n/* an edit that changes nothing */\n")
    os.utime(target, (time.time() - 30, time.time() - 30))
    # Metadata alone changes: the content hash says it is the same file.
    os.utime(tree / "fs" / "direct-io.c", (time.time() - 20, time.time() - 20))
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.lowered == ["mm/follow_ref.c"]
    assert same(warm, scan(tree, None))


def test_editing_the_header_that_defines_get_page(tmp_path: Path, rec: Recorder) -> None:
    """v3.2's get_page() serializes tail references: the same code is no longer a bug."""
    tree = copy_tree(V31, tmp_path / "t")
    before = scan(tree, rec.store(tmp_path / "c"))
    shutil.copy(V32 / "include" / "linux" / "mm.h", tree / "include" / "linux" / "mm.h")
    warm = scan(tree, rec.store(tmp_path / "c"))
    cold = scan(tree, None)
    assert same(warm, cold)
    assert warm.refcount_model.name != before.refcount_model.name
    assert "include/linux/mm.h" in rec.lowered


def test_a_scanned_file_that_starts_defining_get_page(tmp_path: Path, rec: Recorder) -> None:
    """The context a run chose (the header defining get_page()) is reused only while the
    scanned files still leave get_page() and its callees to the headers."""
    tree = copy_tree(V31, tmp_path / "t")
    first = scan(tree, rec.store(tmp_path / "c"))
    assert first.refcount_model.name == "split-tail"
    own = tree / "mm" / "own_get_page.c"
    own.write_text(
        '#include "kstubs.h"\n'
        "void get_page(struct page *page)\n{\n\tfolio_get(page_folio(page));\n}\n"
    )
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert same(warm, scan(tree, None))
    assert warm.refcount_model.name == "folio"


CALLER = """#include "kstubs.h"
void lock_tables(struct mm_struct *mm);
void unlock_tables(struct mm_struct *mm);

void caller(struct mm_struct *mm, unsigned long addr)
{
	struct page *pages[1];

	get_user_pages_fast(addr, 1, 1, pages);
	lock_tables(mm);
	get_page(pages[0]);
	unlock_tables(mm);
	put_page(pages[0]);
	put_page(pages[0]);
}
"""
CALLEE = """#include "kstubs.h"
void lock_tables(struct mm_struct *mm)
{
	spin_lock(&mm->page_table_lock);
}

void unlock_tables(struct mm_struct *mm)
{
	spin_unlock(&mm->page_table_lock);
}
"""


def locking_tree(tree: Path) -> Path:
    """A tree whose mm/ holds CALLER and CALLEE."""
    shutil.copytree(FIXTURES / "include", tree / "include")
    (tree / "mm").mkdir()
    (tree / "include" / "linux").mkdir()
    (tree / "mm" / "caller.c").write_text(CALLER)
    (tree / "mm" / "callee.c").write_text(CALLEE)
    shutil.copy(V31 / "include" / "linux" / "mm.h", tree / "include" / "linux" / "mm.h")
    return tree


def test_editing_a_callees_locking_changes_the_callers_finding(
    tmp_path: Path, rec: Recorder
) -> None:
    tree = locking_tree(tmp_path / "t")
    locked = scan(tree, rec.store(tmp_path / "c"), ["mm"])
    assert not [f for f in locked.findings if f.rule_id == "tail-ref-race"]
    (tree / "mm" / "callee.c").write_text(CALLEE.replace("\tspin_lock(", "\t/* */ (void)("))
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"), ["mm"])
    assert rec.lowered == ["mm/callee.c"], "the caller's file is read from the store"
    assert same(warm, scan(tree, None, ["mm"]))
    assert [f.function for f in warm.findings if f.rule_id == "tail-ref-race"] == ["caller"]


# A file in the program (it names a page) that no analysis needs the body of.
STATS = """#include "kstubs.h"
struct page_stats { int hits; };

int count_hits(struct page_stats *s, unsigned long addr)
{
	return s->hits + 1;
}
"""


def test_a_change_no_analysis_read_reuses_the_findings(tmp_path: Path, rec: Recorder) -> None:
    """The edit shifts every line of a file whose bodies no analysis read, and keeps its
    shape: the last run's findings stand, with the file's new coverage."""
    tree = copy_tree(V31, tmp_path / "t")
    (tree / "mm" / "stats.c").write_text(STATS)
    first = scan(tree, rec.store(tmp_path / "c"))
    assert first.findings and rec.analyses == 1
    (tree / "mm" / "stats.c").write_text(
        STATS.replace("#include", "\n\n#include").replace("s->hits + 1", "s->hits * 2 - 1")
    )
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 1, "the findings were reused"
    assert rec.lowered == ["mm/stats.c"]
    assert same(warm, scan(tree, None))


def test_a_shape_change_in_an_unread_file_is_analyzed(tmp_path: Path, rec: Recorder) -> None:
    """The same file starts taking references on GUP pages: its shape (its calls)
    changed, so the analyses run again and find it."""
    tree = copy_tree(V31, tmp_path / "t")
    (tree / "mm" / "stats.c").write_text(STATS)
    scan(tree, rec.store(tmp_path / "c"))
    racy = """
void grab(unsigned long addr)
{
	struct page *pages[1];

	get_user_pages_fast(addr, 1, 1, pages);
	get_page(pages[0]);
}
"""
    (tree / "mm" / "stats.c").write_text(STATS + racy)
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 2
    assert same(warm, scan(tree, None))
    assert "grab" in {f.function for f in warm.findings}


def test_a_body_change_an_analysis_read_is_analyzed(tmp_path: Path, rec: Recorder) -> None:
    """The caller's body was read; the edit keeps its shape (same calls, same fields) but
    takes the lock on one path only, and the reference becomes a race."""
    tree = locking_tree(tmp_path / "t")
    locked = scan(tree, rec.store(tmp_path / "c"), ["mm"])
    assert not [f for f in locked.findings if f.rule_id == "tail-ref-race"]
    (tree / "mm" / "caller.c").write_text(
        CALLER.replace("\tlock_tables(mm);", "\tif (addr)\n\t\tlock_tables(mm);")
    )
    warm = scan(tree, rec.store(tmp_path / "c"), ["mm"])
    assert rec.analyses == 2
    assert same(warm, scan(tree, None, ["mm"]))
    assert [f.function for f in warm.findings if f.rule_id == "tail-ref-race"] == ["caller"]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_moved_bodies_an_analysis_read_keep_their_findings_moved(
    tmp_path: Path, rec: Recorder
) -> None:
    """Lines are added above and between the functions whose bodies the analyses read,
    and inside one they did not read, in every file with a finding: the findings are
    reused, their lines moved with the functions, and equal a cold run's."""
    tree = copy_tree(V31, tmp_path / "t")
    first = scan(tree, rec.store(tmp_path / "c"))
    _edit(tree / "mm" / "follow_ref.c", '#include "linux/mm.h"\n', '#include "linux/mm.h"\n\n\n')
    _edit(
        tree / "mm" / "follow_ref.c",
        "}\n\nstatic struct page *follow_ref_foll",
        "}\n\n\nstatic struct page *follow_ref_foll",
    )
    _edit(tree / "fs" / "direct-io.c", "/*", "/* one more line\n *")
    _edit(tree / "mm" / "thp_paths.c", "\n", "\n\n")
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 1, "the findings were reused"
    assert sorted(rec.lowered) == ["fs/direct-io.c", "mm/follow_ref.c", "mm/thp_paths.c"]
    cold = scan(tree, None)
    assert same(warm, cold) and cold.functions and warm.functions == cold.functions
    lines = lambda r: [(f.location.path, f.location.line) for f in r.findings]  # noqa: E731
    assert all(a != b for a, b in zip(lines(first), lines(warm), strict=True))
    # Once more, from the moved record: the next run's moves start where these ended.
    _edit(tree / "mm" / "follow_ref.c", "int follow_ref_run", "\nint follow_ref_run")
    rec.analyses = 0
    again = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 0
    cold = scan(tree, None)
    assert same(again, cold) and again.functions == cold.functions


def test_a_reused_line_outside_the_functions_read_is_analyzed_again(
    tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record of what was read misses a function a finding is in (as a record that
    left one out would): once its file moves, the findings are not reused with a line
    that did not move, but analyzed again."""
    tree = copy_tree(V31, tmp_path / "t")
    marks = engine._read_marks

    def forgetful(parsed: engine.Parsed) -> dict[str, engine._Seen]:
        out = marks(parsed)
        seen = out["mm/follow_ref.c"]
        kept = tuple(r for r in seen.read if not r.key.endswith(":follow_ref_unlocked"))
        assert len(kept) < len(seen.read)
        out["mm/follow_ref.c"] = dataclasses.replace(seen, read=kept)
        return out

    monkeypatch.setattr(engine, "_read_marks", forgetful)
    scan(tree, rec.store(tmp_path / "c"))
    _edit(tree / "mm" / "follow_ref.c", '#include "linux/mm.h"\n', '#include "linux/mm.h"\n\n')
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 2
    assert same(warm, scan(tree, None))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the text of a body an analysis read
        ("\tif (page)\n\t\tget_page(page);", "\tif (page) /* now */\n\t\tget_page(page);"),
        # the column it starts at: its first line's columns move
        (
            "static struct page *follow_ref_unlocked",
            "/* */ static struct page *follow_ref_unlocked",
        ),
    ],
    ids=["text", "column"],
)
def test_a_read_body_with_another_text_or_column_is_analyzed(
    tmp_path: Path, rec: Recorder, old: str, new: str
) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    scan(tree, rec.store(tmp_path / "c"))
    _edit(tree / "mm" / "follow_ref.c", old, new)
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert rec.analyses == 2
    assert same(warm, scan(tree, None))


# Lines an edit adds: blank or a comment (most often), a statement, a macro.
_LINES = (b"\n", b"/* a comment */\n") * 3 + (b"\tbarrier();\n", b"#define UNUSED_MACRO 1\n")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_warm_run_after_added_lines_equals_a_cold_one(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Lines added anywhere in the files with findings, whether the findings are reused
    (moved) or analyzed again: the warm result is the cold one, function facts too."""
    tmp = tmp_path_factory.mktemp("moves")
    tree = copy_tree(V31, tmp / "t")
    scan(tree, FactStore(tmp / "c", pytest.fail))
    for rel in ("mm/follow_ref.c", "mm/thp_paths.c", "fs/direct-io.c"):
        lines = (tree / rel).read_bytes().splitlines(keepends=True)
        for _ in range(data.draw(st.integers(0, 2))):
            # anywhere, or (as often) between functions: after a `}` line, or at the top
            between = [0] + [i + 1 for i, line in enumerate(lines) if line == b"}\n"]
            anywhere = st.integers(0, len(lines))
            at = data.draw(st.one_of(anywhere, st.sampled_from(between)))
            lines.insert(at, data.draw(st.sampled_from(_LINES)))
        (tree / rel).write_bytes(b"".join(lines))
    warm = scan(tree, FactStore(tmp / "c", pytest.fail))
    cold = scan(tree, None)
    assert same(warm, cold) and warm.functions == cold.functions


def test_a_warm_analysis_fetches_only_the_bodies_it_reads(
    tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store keeps function bodies apart from the rest of a file's IR: a warm run
    that analyzes again fetches the bodies of the files its analyses read, each file's
    once, and no others."""
    tree = copy_tree(V31, tmp_path / "t")
    (tree / "mm" / "stats.c").write_text(STATS)
    cold = scan(tree, rec.store(tmp_path / "c"))
    con = sqlite3.connect(tmp_path / "c" / DB_NAME)
    with con:
        con.execute("DELETE FROM results")
    con.close()
    fetched: list[str] = []
    fetch = FactStore.bodies

    def counting(self: FactStore, rel: str, d: str) -> tuple[bytes, ...] | None:
        fetched.append(rel)
        return fetch(self, rel, d)

    monkeypatch.setattr(FactStore, "bodies", counting)
    rec.lowered.clear()
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert same(warm, cold) and rec.analyses == 2 and rec.lowered == []
    assert "fs/direct-io.c" in fetched and "mm/stats.c" not in fetched
    assert len(fetched) == len(set(fetched))
    assert rec.warnings == []


def test_one_scan_sees_one_version_of_each_file(
    tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan asks for each file's hash several times (its result's key, its entries,
    its context): within store.snapshot() the file is looked at once."""
    store = rec.store(tmp_path / "c")
    path = tmp_path / "a.c"
    path.write_text("int a;\n")
    stats: list[str] = []
    real_stat = os.stat

    def counting(p: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(p)
        return real_stat(p, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting)
    with store.snapshot():
        first = store.file_digest(str(path))
        path.write_text("int b;\n")
        assert store.file_digest(str(path)) == first
    assert stats == [str(path)]
    assert store.file_digest(str(path)) != first, "a new scan sees the change"
    store.close()


def test_many_files_are_read_with_one_query_for_the_unlowered(
    tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for many files (here: any), the store reads the entries of the files not
    lowered in one query, and the others one by one; a damaged one is still found."""
    monkeypatch.setattr(factstore, "_BULK", 1)
    tree = copy_tree(V31, tmp_path / "t")
    (tree / "mm" / "plain.c").write_text("int plain(int x)\n{\n\treturn x + 1;\n}\n")
    cold = scan(tree, rec.store(tmp_path / "c"))
    assert cold.coverage.unneeded == ("mm/plain.c",)

    def warm() -> tuple[RunResult, list[str]]:
        con = sqlite3.connect(tmp_path / "c" / DB_NAME)
        with con:
            con.execute("DELETE FROM results")
        con.close()
        store = rec.store(tmp_path / "c")
        queries: list[str] = []
        store.db.set_trace_callback(queries.append)
        return scan(tree, store), [
            q for q in queries if q.startswith("SELECT blob, checksum FROM files")
        ]

    result, one_by_one = warm()
    assert same(result, cold) and rec.warnings == []
    queried = {q.split("rel = '")[1].split("'")[0] for q in one_by_one}
    context = {"include/linux/mm.h"}
    assert queried == {f.path for f in cold.coverage.files} | context
    con = sqlite3.connect(tmp_path / "c" / DB_NAME)
    with con:
        con.execute("UPDATE files SET blob = x'00' WHERE rel = 'mm/plain.c'")
    con.close()
    result, _ = warm()
    assert same(result, cold)
    assert len(rec.warnings) == 1 and "damaged entry for mm/plain.c" in rec.warnings[0]
    rec.warnings.clear()
    assert same(warm()[0], cold) and rec.warnings == [], "the entry was replaced"


def test_a_file_changed_before_its_damaged_bodies_are_read(tmp_path: Path, rec: Recorder) -> None:
    """Bodies the store lost are lowered again from the file, which must still be the
    file the rest of its IR came from."""
    tree = copy_tree(V31, tmp_path / "t")
    store = rec.store(tmp_path / "c")
    rel = "fs/direct-io.c"
    d = store.file_digest(str(tree / rel))
    bodies = engine._StoredBodies(tree, rel, d, store)
    assert pickle.loads(bodies.body(0)).cfg.instrs, "missing bodies are lowered again"
    assert store.bodies(rel, d) is not None, "and stored"
    with store.db:
        store.db.execute("DELETE FROM bodies")
    (tree / rel).write_text((tree / rel).read_text() + "\nint added;\n")
    with pytest.raises(TreeError, match="fs/direct-io.c: changed while krefaudit ran"):
        engine._StoredBodies(tree, rel, d, store).body(0)
    store.close()


@pytest.fixture
def own_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of rules/ that the test may edit, used by the loader and the store."""
    rules = tmp_path / "rules"
    shutil.copytree(loader.rules_dir(), rules)
    monkeypatch.setattr(loader, "rules_dir", lambda: rules)
    monkeypatch.setattr(factstore, "rules_dir", lambda: rules)
    clear = (factstore.salt.cache_clear, loader.load_api.cache_clear, loader.load_rules.cache_clear)
    for f in clear:
        f()
    yield rules
    for f in clear:
        f()


def test_editing_a_rule_file(tmp_path: Path, own_rules: Path) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    before = scan(tree, FactStore(tmp_path / "c", pytest.fail))
    rule = own_rules / "tail-ref-race.yaml"
    rule.write_text(rule.read_text().replace("sinks: [get_page, ", "sinks: ["))
    factstore.salt.cache_clear()
    loader.load_rules.cache_clear()
    warm = scan(tree, FactStore(tmp_path / "c", pytest.fail))
    assert same(warm, scan(tree, None))
    assert len(warm.findings) < len(before.findings)


def test_lower_all_and_prefiltered_runs_share_a_store(tmp_path: Path, rec: Recorder) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    (tree / "mm" / "plain.c").write_text("int plain(int x)\n{\n\treturn x + 1;\n}\n")
    everything = engine.scan(tree, None, store=rec.store(tmp_path / "c"), lower_all=True)
    assert "mm/plain.c" in {f.path for f in everything.coverage.files}
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert warm.coverage.unneeded == ("mm/plain.c",)
    assert same(warm, scan(tree, None))
    assert same(
        engine.scan(tree, None, store=rec.store(tmp_path / "c"), lower_all=True), everything
    )


def _damage(db: Path, table: str) -> None:
    """Flip a byte in the middle of every entry, as a bad disk block would."""
    con = sqlite3.connect(db)
    with con:
        for rowid, blob in con.execute(f"SELECT rowid, blob FROM {table}").fetchall():
            mid = len(blob) // 2
            bad = blob[:mid] + bytes([blob[mid] ^ 0x55]) + blob[mid + 1 :]
            con.execute(f"UPDATE {table} SET blob = ? WHERE rowid = ?", (bad, rowid))
        if table != "results":  # no whole-run result to answer from: the files are read
            con.execute("DELETE FROM results")
    con.close()


@pytest.mark.parametrize("table", ["files", "bodies", "results"])
def test_a_damaged_entry_is_detected_and_rebuilt(tmp_path: Path, rec: Recorder, table: str) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    cold = scan(tree, rec.store(tmp_path / "c"))
    _damage(tmp_path / "c" / DB_NAME, table)
    warm = scan(tree, rec.store(tmp_path / "c"))
    assert same(warm, cold)
    assert rec.warnings and all("damaged entry" in w for w in rec.warnings)
    rec.warnings.clear()
    assert same(scan(tree, rec.store(tmp_path / "c")), cold)
    assert rec.warnings == [], "the damaged entries were replaced"


def test_an_entry_of_the_wrong_type_is_a_damaged_entry(tmp_path: Path, rec: Recorder) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    cold = scan(tree, rec.store(tmp_path / "c"))
    con = sqlite3.connect(tmp_path / "c" / DB_NAME)
    with con:
        con.execute("UPDATE files SET blob = CAST(x'80ff00' AS TEXT)")
        con.execute("DELETE FROM results")
    con.close()
    assert same(scan(tree, rec.store(tmp_path / "c")), cold)
    assert rec.warnings and all("damaged entry" in w for w in rec.warnings)


def test_a_damaged_database_file_is_replaced(tmp_path: Path, rec: Recorder) -> None:
    tree = copy_tree(V31, tmp_path / "t")
    cold = scan(tree, None)
    (tmp_path / "c").mkdir(mode=0o700)
    (tmp_path / "c" / DB_NAME).write_bytes(b"not a database " * 1000)
    assert same(scan(tree, rec.store(tmp_path / "c")), cold)
    assert len(rec.warnings) == 1 and "damaged" in rec.warnings[0]
    assert same(scan(tree, rec.store(tmp_path / "c")), cold)


def _rows(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM files").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.fixture
def big_tree(tmp_path: Path) -> Iterator[Path]:
    """Many copies of the fixtures: a run long enough to be killed in the middle."""
    tree = tmp_path / "big"
    shutil.copytree(FIXTURES / "include", tree / "include")
    sources = sorted(p for p in FIXTURES.rglob("*.c") if "models" not in p.parts)
    for i in range(6):
        for src in sources:
            dst = tree / f"d{i}" / src.relative_to(FIXTURES)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    yield tree


def test_the_store_survives_a_killed_process(tmp_path: Path, big_tree: Path) -> None:
    cache = tmp_path / "c"
    cmd = [sys.executable, "-m", "analyzer", "scan", str(big_tree), ".", "-q", "-j", "1"]
    proc = subprocess.Popen(
        [*cmd, "--cache", str(cache), "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _rows(cache / DB_NAME) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _rows(cache / DB_NAME) > 0
    warm = subprocess.run(
        [*cmd, "--cache", str(cache), "--format", "json"], capture_output=True, text=True
    )
    cold = subprocess.run([*cmd, "--no-cache", "--format", "json"], capture_output=True, text=True)
    assert warm.returncode == cold.returncode == 1
    assert warm.stdout == cold.stdout
    assert "warning" not in warm.stderr


def test_a_store_others_can_write_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    cache.chmod(0o777)
    r = CliRunner().invoke(main, ["scan", str(V31), "--cache", str(cache)])
    assert r.exit_code == 1
    assert "cache not used" in r.stderr and "writable by other users" in r.stderr
    assert not (cache / DB_NAME).exists()
    assert "[tail-ref-race]" in r.stdout


def test_cli_cache_options(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    args = ["scan", str(V31), "--format", "json"]
    first = CliRunner().invoke(main, [*args, "--cache", str(cache)])
    assert (cache / DB_NAME).exists()
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    assert oct((cache / DB_NAME).stat().st_mode & 0o777) == oct(0o600)
    second = CliRunner().invoke(main, [*args, "--cache", str(cache)])
    none = CliRunner().invoke(main, [*args, "--no-cache"])
    assert first.stdout == second.stdout == none.stdout


def test_a_result_without_function_facts_is_not_served_to_a_run_that_wants_them(
    tmp_path: Path, rec: Recorder
) -> None:
    """Patch mode leaves out the facts of the functions in traces (only the HTML report
    draws them); a later scan of the same inputs must not take that result for its own,
    whole or through the findings it reuses after a change."""
    tree = copy_tree(V31, tmp_path / "t")
    plain = tree / "mm" / "plain.c"
    plain.write_text("int plain(int x)\n{\n\treturn x + 1;\n}\n")
    bare = engine.scan(tree, None, store=rec.store(tmp_path / "c"), functions=False)
    assert bare.findings and not bare.functions and not bare.has_functions
    cold = scan(tree, None)
    assert cold.functions
    rec.analyses = 0
    assert scan(tree, rec.store(tmp_path / "c")).functions == cold.functions
    assert rec.analyses == 1
    # After an edit no analysis can see, a run reuses the last run's findings; not
    # those of a facts-less run when it wants the facts.
    engine.scan(tree, None, store=rec.store(tmp_path / "c2"), functions=False)
    plain.write_text("int plain(int x)\n{\n\treturn x + 2;\n}\n")
    rec.analyses = 0
    assert scan(tree, rec.store(tmp_path / "c2")).functions == cold.functions
    assert rec.analyses == 1
