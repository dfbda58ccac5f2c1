"""End to end on the real 6.1 and 6.12 trees: coverage against an independent count,
known call edges, and the seed rule's verdict with its reason."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from functools import cache
from pathlib import Path

import pytest

from analyzer import engine
from analyzer.engine import parse_paths, scan
from analyzer.factstore import DB_NAME, FactStore
from analyzer.model import RunResult
from analyzer.program.model import Program
from analyzer.report.json_report import render_json

pytestmark = pytest.mark.realtree

COVERAGE_BAR = 0.995


@cache
def _scan(tree: Path) -> RunResult:
    return scan(tree, ["mm", "fs", "io_uring"])


def test_prefilter_changes_no_finding(tree_6_1: Path) -> None:
    """A scan leaves out files that name nothing the rules track; lowering them too
    changes no finding on real mm/, fs/ and io_uring/."""
    filtered = _scan(tree_6_1)
    everything = scan(tree_6_1, ["mm", "fs", "io_uring"], jobs=2, lower_all=True)
    print(f"{len(filtered.coverage.unneeded)} of {len(everything.coverage.files)} files left out")
    assert len(filtered.coverage.unneeded) > 500
    assert not everything.coverage.unneeded
    assert [f.fingerprint for f in filtered.findings] == [
        f.fingerprint for f in everything.findings
    ]


def ctags_definitions(tree: Path, sub: str) -> dict[str, list[tuple[int, str]]]:
    """Function definitions counted by Universal Ctags (Debian package universal-ctags),
    independently of tree-sitter: `ctags -x --c-kinds=f` lists each definition with the
    line of its name; .c files only."""
    ctags = shutil.which("ctags")
    if ctags is None:
        pytest.fail("ctags not found: apt-get install universal-ctags")
    out = subprocess.run(
        [ctags, "-x", "--c-kinds=f", "--language-force=C", "-R", sub],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        name, _kind, lineno, path = line.split(None, 4)[:4]
        if path.endswith(".c"):
            found.setdefault(path, []).append((int(lineno), name))
    return found


@pytest.mark.parametrize("sub", ["mm", "fs"])
def test_coverage_against_ctags(tree_6_1: Path, sub: str) -> None:
    """Each definition ctags sees must be one of our lowered functions: one whose lines
    contain the line of the name ctags reports."""
    truth = ctags_definitions(tree_6_1, sub)
    result = _scan(tree_6_1)
    assert not result.coverage.failed_files
    parsed = parse_paths(tree_6_1, sorted(truth))
    by_path = {f.path: f for f in parsed.files}
    missing = []
    total = 0
    for path, defs in sorted(truth.items()):
        spans = sorted((fn.loc.line, fn.end_line) for fn in by_path[path].functions)
        used: set[tuple[int, int]] = set()
        for line, name in defs:
            total += 1
            hit = next((s for s in spans if s[0] <= line <= s[1] and s not in used), None)
            if hit is None:
                missing.append(f"{path}:{line}: {name}")
            else:
                used.add(hit)
    ratio = (total - len(missing)) / total
    print(f"\n{sub}: {total} definitions by ctags, {len(missing)} not lowered: {ratio:.4%}")
    print("\n".join(missing[:50]))
    assert ratio >= COVERAGE_BAR, missing[:50]


def test_known_call_edges(tree_6_1: Path) -> None:
    parsed = parse_paths(tree_6_1, ["mm", "fs/direct-io.c"])
    program = Program(parsed.files)

    def callees(key: str) -> set[str]:
        return {t.key for _s, ts in program.callees(program.by_key[key]) for t in ts}

    assert "mm/gup.c:follow_page_mask" in callees("mm/gup.c:__get_user_pages")
    assert "mm/gup.c:follow_page_mask" in callees("mm/gup.c:follow_page")
    assert "fs/direct-io.c:dio_refill_pages" in callees("fs/direct-io.c:dio_get_page")
    assert "fs/direct-io.c:dio_get_page" in callees("fs/direct-io.c:do_direct_IO")
    assert "mm/memory.c:__handle_mm_fault" in callees("mm/memory.c:handle_mm_fault")
    # Through a function pointer: vma->vm_ops->fault(vmf) reaches shmem's fault handler.
    assert "mm/shmem.c:shmem_fault" in callees("mm/memory.c:__do_fault")


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_seed_rule_is_moot_on_folio_trees(
    version: str, tree_6_1: Path, request: pytest.FixtureRequest
) -> None:
    tree = tree_6_1 if version == "6.1" else request.getfixturevalue("tree_6_12")
    result = _scan(tree)
    assert not result.diagnostics, result.diagnostics[:10]
    assert result.refcount_model.name == "folio"
    assert result.refcount_model.source == "tree"
    first = result.refcount_model.evidence[0].location
    assert (first.path, first.line) == ("include/linux/mm.h", {"6.1": 1150, "6.12": 1448}[version])
    assert "refcount model folio" in result.refcount_model.evidence[-1].note
    (outcome,) = [o for o in result.outcomes if o.rule_id == "tail-ref-race"]
    assert outcome.reported == 0
    assert not [f for f in result.findings if f.rule_id == "tail-ref-race"]
    # The rule ran: GUP pages reach reference primitives in direct I/O and elsewhere.
    assert outcome.checked > 0
    assert "not applicable: refcount model folio" in outcome.note


# Every release-rule finding on the real trees' mm/, fs/ and io_uring/, as triaged by
# reading the code in docs/triage-6.1.md: a change in this set needs a new triage.
TRIAGED = {
    "6.1": {("mm/gup.c", "__get_user_pages_locked", "gup-leak")},
    "6.12": {
        ("fs/netfs/iterator.c", "netfs_extract_user_iter", "gup-leak"),
        ("mm/gup.c", "__get_user_pages_locked", "gup-leak"),
    },
}
# The same for the drivers/ files that call the GUP family (docs/triage-6.1.md).
TRIAGED_DRIVERS = {
    "6.1": {
        ("drivers/gpu/drm/via/via_dri1.c", "via_lock_all_dma_pages", "gup-leak"),
        ("drivers/misc/bcm-vk/bcm_vk_sg.c", "bcm_vk_dma_alloc", "gup-leak"),
        ("drivers/rapidio/devices/rio_mport_cdev.c", "rio_dma_transfer", "gup-leak"),
        ("drivers/vdpa/vdpa_user/vduse_dev.c", "vduse_dev_reg_umem", "gup-leak"),
    },
    "6.12": {
        ("drivers/misc/bcm-vk/bcm_vk_sg.c", "bcm_vk_dma_alloc", "gup-leak"),
        ("drivers/rapidio/devices/rio_mport_cdev.c", "rio_dma_transfer", "gup-leak"),
        ("drivers/vdpa/vdpa_user/vduse_dev.c", "vduse_dev_reg_umem", "gup-leak"),
    },
}
_GUP_CALL = re.compile(
    r"\b(?:get_user_pages\w*|pin_user_pages\w*|get_dump_page|get_user_page_vma_remote"
    r"|iov_iter_get_pages\w*|iov_iter_extract_pages|follow_page)\s*\("
)
RELEASE_FAMILIES = (
    "put: put_page, release_pages",
    "unpin: unpin_user_page, unpin_user_pages, unpin_user_pages_dirty_lock",
)


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_release_rules_on_real_trees(
    version: str, tree_6_1: Path, request: pytest.FixtureRequest
) -> None:
    tree = tree_6_1 if version == "6.1" else request.getfixturevalue("tree_6_12")
    result = _scan(tree)
    assert result.refcount_model.release_families == RELEASE_FAMILIES
    outcomes = {o.rule_id: o for o in result.outcomes}
    # GUP calls in mm/gup.c, mm/, fs/ and io_uring/ followed along their paths
    assert outcomes["gup-leak"].checked >= 35, outcomes["gup-leak"]
    release = {"gup-leak", "gup-over-release", "pin-put-mismatch"}
    found = {
        (f.location.path, f.function, f.rule_id) for f in result.findings if f.rule_id in release
    }
    assert found == TRIAGED[version]
    skipped = [s for f in result.coverage.files for s in f.skipped if "ownership" in s.reason]
    assert not skipped, skipped[:5]


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_release_rules_on_real_drivers(version: str, request: pytest.FixtureRequest) -> None:
    """Every drivers/ file that calls the GUP family, in one run (callers and helpers in
    other files are out of the run: a leak behind a cross-file hand-off is not seen)."""
    tree = request.getfixturevalue("tree_6_1_full" if version == "6.1" else "tree_6_12_full")
    files = sorted(
        p.relative_to(tree).as_posix()
        for p in (tree / "drivers").rglob("*.c")
        if _GUP_CALL.search(p.read_text(errors="replace"))
    )
    assert len(files) > 40, files
    result = scan(tree, files, jobs=2)
    assert not result.diagnostics, result.diagnostics[:5]
    outcomes = {o.rule_id: o for o in result.outcomes}
    assert outcomes["gup-leak"].checked >= 50, outcomes["gup-leak"]
    release = {"gup-leak", "gup-over-release", "pin-put-mismatch"}
    found = {
        (f.location.path, f.function, f.rule_id) for f in result.findings if f.rule_id in release
    }
    assert found == TRIAGED_DRIVERS[version]


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_futex_key_pages_are_released_through_their_folio(
    version: str, request: pytest.FixtureRequest
) -> None:
    """get_futex_key() takes one page with get_user_pages_fast(), retried read-only
    into the same variable, and gives it back on every path: with put_page(page) in
    6.1, with folio_put(folio) of `folio = page_folio(page)` in 6.12 (which the release
    rules reported seven times before folios were known)."""
    tree = request.getfixturevalue("tree_6_1_full" if version == "6.1" else "tree_6_12_full")
    result = scan(tree, ["kernel/futex/core.c"])
    outcomes = {o.rule_id: o for o in result.outcomes}
    assert outcomes["gup-leak"].checked == 2, outcomes["gup-leak"]
    release = {"gup-leak", "gup-over-release", "pin-put-mismatch"}
    assert [f for f in result.findings if f.rule_id in release] == []


def test_pages_set_into_a_scatterlist_are_handed_off(tree_6_1_full: Path) -> None:
    """sg_set_page() has a body once include/linux/scatterlist.h is scanned: its
    sg_assign_page() keeps the page as `page_link | (unsigned long)page`. The functions
    below give every page they take to a scatterlist that way and were each reported
    as leaking them (a whole-tree scan's false positives; see docs/triage-6.1.md)."""
    files = [
        "net/core/skmsg.c",
        "net/rds/message.c",
        "net/rds/rdma.c",
        "net/tls/tls_sw.c",
        "drivers/infiniband/hw/mthca/mthca_memfree.c",
        "include/linux/scatterlist.h",
    ]
    result = scan(tree_6_1_full, files, jobs=2)
    outcomes = {o.rule_id: o for o in result.outcomes}
    assert outcomes["gup-leak"].checked == 8, outcomes["gup-leak"]
    handing = {
        "sk_msg_zerocopy_from_iter",
        "rds_message_zcopy_from_user",
        "rds_cmsg_atomic",
        "tls_setup_from_iter",
        "mthca_map_user_db",
    }
    leaks = {f.function for f in result.findings if f.rule_id == "gup-leak"}
    assert not leaks & handing, leaks


def test_pre_3_2_model_flags_the_historical_direct_io_sites(tree_6_1: Path) -> None:
    """Under the <= 3.1 refcount model, the real 6.1 fs/direct-io.c still has the shape of
    the 2011 bug: pages from iov_iter_get_pages2() in dio->pages[], handed out by
    dio_get_page(), passed to submit_page_section() and stored in sdio->cur_page, then
    referenced in submit_page_section() and dio_bio_add_page() with no lock held."""
    result = scan(tree_6_1, ["fs/direct-io.c"], refcount_model="split-tail")
    assert [(f.location.path, f.function) for f in result.findings] == [
        ("fs/direct-io.c", "dio_bio_add_page"),
        ("fs/direct-io.c", "submit_page_section"),
    ]
    notes = [s.note for s in result.findings[0].trace]
    assert notes[0] == "iov_iter_get_pages2() stores referenced user pages in dio->pages"
    assert "returned by dio_get_page()" in notes
    assert "page passed to submit_page_section() as page" in notes
    assert "stored into sdio->cur_page" in notes
    assert "page read back from sdio->cur_page" in notes
    # The caller named is the one the page comes through, not dio_zero_block(), which
    # calls submit_page_section() unlocked too but with ZERO_PAGE.
    last_call = [s for s in result.findings[1].trace if "calls submit_page_section()" in s.note]
    assert [s.function for s in last_call] == ["do_direct_IO"]


def test_fact_store_round_trip_on_a_real_tree(tree_6_1: Path, tmp_path: Path) -> None:
    """Every mm/ file's IR and the header context come back from the store (the whole-run
    result is dropped first) and give the cold run's result, byte for byte."""
    store = FactStore(tmp_path, pytest.fail)
    cold = scan(tree_6_1, ["mm"], jobs=2, store=store)
    store.close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    with con:
        con.execute("DELETE FROM results")
    con.close()
    store = FactStore(tmp_path, pytest.fail)
    warm = scan(tree_6_1, ["mm"], jobs=2, store=store)
    store.close()
    assert render_json(warm) == render_json(cold)
    assert render_json(cold) == render_json(scan(tree_6_1, ["mm"], jobs=2))


def test_edits_that_only_move_read_bodies_keep_the_findings_on_a_real_tree(
    tree_6_1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line is inserted at the top of every mm/ file in the program, and one more just
    above the last function whose body an analysis read in each file that has one: the
    warm run reuses the findings without analyzing, and its report (whose traces and
    function facts show lines of the moved functions) equals a cold run's over the
    edited tree, byte for byte."""
    tree = tmp_path / "t"
    for part in ("mm", "include", "arch/x86/include"):
        if (tree_6_1 / part).is_dir():
            shutil.copytree(tree_6_1 / part, tree / part, copy_function=os.link)
    marks: dict[str, engine._Seen] = {}
    analyses: list[None] = []
    read_marks, analyze = engine._read_marks, engine._analyze

    def marking(parsed: engine.Parsed) -> dict[str, engine._Seen]:
        marks.update(read_marks(parsed))
        return marks

    def analyzing(*args: object) -> object:
        analyses.append(None)
        return analyze(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_read_marks", marking)
    monkeypatch.setattr(engine, "_analyze", analyzing)
    store = FactStore(tmp_path / "c", pytest.fail)
    first = scan(tree, ["mm"], jobs=2, store=store)
    store.close()
    edited = {rel: s for rel, s in marks.items() if s.shape is not None}
    assert sum(bool(s.read) for s in edited.values()) >= 20
    assert sum(not s.read for s in edited.values()) >= 20
    for rel, s in edited.items():
        p = tree / rel
        lines = p.read_bytes().splitlines(keepends=True)
        if s.read:
            last = max(r.line for r in s.read)
            lines.insert(last - 1, b"\n")
        p.unlink()  # a hard link to the shared tree: break it first
        p.write_bytes(b"".join([b"\n", *lines]))
    store = FactStore(tmp_path / "c", pytest.fail)
    warm = scan(tree, ["mm"], jobs=2, store=store)
    store.close()
    assert len(analyses) == 1, "the findings were reused"
    cold = scan(tree, ["mm"], jobs=2)
    assert render_json(warm) == render_json(cold)
    assert warm.functions == cold.functions  # what the HTML report draws
    assert warm.functions != first.functions


def test_sigterm_leaves_the_previous_report_intact(tree_6_1: Path, tmp_path: Path) -> None:
    """SIGTERM in the middle of parsing: exit 130, the earlier report untouched, nothing
    else written. The signal waits for the first progress line past the first file, so
    the handler is in place and the run, mm/ and fs/ with no cache, is far from done."""
    import signal
    import sys

    out = tmp_path / "scan.json"
    out.write_text('{"previous": true}\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "scan", str(tree_6_1), "mm", "fs", "--json", str(out)]
        + ["--no-cache"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("krefaudit: parsing ") and not line.startswith("krefaudit: parsing 0/"):
            break
    else:
        pytest.fail(f"no progress line before the run ended: {seen}")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + [stderr]
    assert "interrupted; no report was written" in stderr
    assert out.read_text() == '{"previous": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["scan.json"]


def _kbuild(tree: Path, check: str, *targets: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [
            "make",
            "-j2",
            "C=2",
            f"CHECK={sys.executable} -m analyzer kbuild-check {check}",
            *targets,
        ],
        cwd=tree,
        capture_output=True,
        text=True,
    )


def test_kbuild_integration_precise_mode(tree_6_1_full: Path) -> None:
    """`make C=2 CHECK="krefaudit kbuild-check --precise"` on a defconfig 6.1 tree: every
    file is preprocessed with its real flags and checked; nothing to report (folio
    model); under the pre-3.2 model the direct-io sites come back at their source lines."""
    targets = ("mm/gup.o", "mm/memory.o", "mm/swap.o", "fs/direct-io.o")
    done = _kbuild(tree_6_1_full, "--precise", *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    for t in targets:
        assert f"CHECK   {t[:-2]}.c" in done.stdout
    assert "warning:" not in done.stdout and "krefaudit: error" not in done.stderr
    (tree_6_1_full / "fs" / "direct-io.c").touch()
    done = _kbuild(tree_6_1_full, "--precise --refcount-model split-tail", "fs/direct-io.o")
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [ln.split(": warning:")[0] for ln in done.stdout.splitlines() if ": warning:" in ln]
    assert warnings == ["fs/direct-io.c:711:3", "fs/direct-io.c:833:2"]
    assert "  fs/direct-io.c:172:8: note: iov_iter_get_pages2() stores" in done.stdout


def _front_end_one(job: tuple[Path, str]) -> tuple[str, int, int, int, str | None]:
    from analyzer.frontend.parse import InputError, parse_file

    tree, rel = job
    try:
        ir = parse_file(tree / rel, rel)
    except InputError as e:
        return rel, 0, 0, 0, f"refused: {e}"
    except Exception as e:  # noqa: BLE001 - a crash is what this test looks for
        return rel, 0, 0, 0, f"crash: {e!r}"
    recovered = sum(fn.status.value == "recovered" for fn in ir.functions)
    return rel, len(ir.functions), recovered, len(ir.skipped), None


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_every_c_file_goes_through_the_front_end(
    version: str, request: pytest.FixtureRequest
) -> None:
    from concurrent.futures import ProcessPoolExecutor

    tree = request.getfixturevalue(f"tree_{version.replace('.', '_')}_full")
    files = sorted(
        p.relative_to(tree).as_posix()
        for p in tree.rglob("*.c")
        if p.is_file() and not p.is_symlink()
    )
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_front_end_one, [(tree, f) for f in files], chunksize=64))
    errors = [f"{rel}: {err}" for rel, *_n, err in results if err]
    functions = sum(r[1] for r in results)
    skipped = sum(r[3] for r in results)
    print(
        f"\n{version}: {len(files)} .c files, {functions} functions,"
        f" {sum(r[2] for r in results)} recovered, {skipped} skipped;"
        f" per-file errors: {errors or 'none'}"
    )
    assert len(files) > 30_000
    assert not errors
    assert skipped / max(functions, 1) < 0.001
