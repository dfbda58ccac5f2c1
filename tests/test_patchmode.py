"""check-range and check-patch on a small kernel-shaped git repository built here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli import main
from tests.fixture_markers import FIXTURES

LOCKED = """#include "kstubs.h"

static struct page *grab(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
\tstruct page *page = follow_page(vma, addr, 0);
\tspinlock_t *ptl;
\tpte_t *pte;

\tif (!page)
\t\treturn NULL;
\tpte = pte_offset_map_lock(vma->vm_mm, pmd, addr, &ptl);
\tget_page(page);
\tpte_unmap_unlock(pte, ptl);
\treturn page;
}

struct page *drv_grab(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
\treturn grab(vma, pmd, addr);
}
"""
UNLOCKED = LOCKED.replace(
    "\tget_page(page);\n\tpte_unmap_unlock(pte, ptl);",
    "\tpte_unmap_unlock(pte, ptl);\n\tget_page(page);",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "linux"
    (repo / "drivers" / "foo").mkdir(parents=True)
    shutil.copytree(FIXTURES / "include", repo / "include")
    (repo / "drivers" / "foo" / "grab.c").write_text(LOCKED)
    (repo / "drivers" / "foo" / "other.c").write_text("int other(void) { return 0; }\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    return repo


def commit(repo: Path, path: str, text: str, msg: str) -> None:
    (repo / path).write_text(text)
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", msg)


def patch_from_worktree(repo: Path, patch: Path) -> Path:
    """The work tree's changes as `patch` (git diff output), then reverted."""
    patch.write_text(git(repo, "diff"))
    git(repo, "checkout", "-q", "--", ".")
    return patch


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout + r.stderr


def test_range_that_introduces_a_finding(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "drivers/foo/grab.c", UNLOCKED, "move get_page after the unlock")
    code, out = run("check-range", str(repo), "HEAD~1..HEAD", "-q")
    assert code == 1, out
    assert "drivers/foo/grab.c:13:2: warning: get_page()" in out
    assert "1 new, 0 fixed" in out


def test_patch_that_fixes_it_and_unrelated_patches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "drivers/foo/grab.c", UNLOCKED, "buggy")
    # The fix, as git format-patch would write it.
    (repo / "drivers" / "foo" / "grab.c").write_text(LOCKED)
    fix = patch_from_worktree(repo, tmp_path / "0001-fix.patch")
    code, out = run("check-patch", str(repo), str(fix), "-q")
    assert code == 0, out
    assert "krefaudit: fixed: drivers/foo/grab.c:13:" in out and "0 new, 1 fixed" in out
    # HEAD was a tree of hard links to this one: patching it changed nothing here.
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "drivers" / "foo" / "grab.c").read_text() == UNLOCKED
    # Unrelated: lines added above the finding, and another file changed.
    shifted = "/* a comment\n * spanning lines\n */\n" + UNLOCKED
    (repo / "drivers" / "foo" / "grab.c").write_text(shifted)
    (repo / "drivers" / "foo" / "other.c").write_text("int other(void) { return 1; }\n")
    unrelated = patch_from_worktree(repo, tmp_path / "0002-unrelated.patch")
    code, out = run("check-patch", str(repo), str(unrelated), "-q")
    assert code == 0, out
    assert "0 new, 0 fixed" in out


def test_bad_range_and_patch_are_input_errors(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    assert run("check-range", str(repo), "nope..HEAD")[0] == 2
    assert run("check-range", str(repo), "HEAD")[0] == 2
    bad = tmp_path / "bad.patch"
    bad.write_text("not a patch\n")
    code, out = run("check-patch", str(repo), str(bad))
    assert code == 2 and "no file changes found" in out


def test_patch_to_a_definition_header_is_read_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    # A change to include/ itself: HEAD must read the patched header (its get_page()
    # decides the refcount model: split-tail before, folio after), and patching it must
    # not write through to the tree, whose unchanged definition folders HEAD otherwise
    # shares by symbolic link.
    repo = make_repo(tmp_path)
    header = repo / "include" / "kstubs.h"
    before = header.read_text()
    split_tail = "\tatomic_inc(&page->_count);\n\tif (unlikely(PageTail(page)))\n"
    assert split_tail in before
    header.write_text(before.replace(split_tail, "\tfolio_get(page_folio(page));\n\tif (0)\n"))
    folio = patch_from_worktree(repo, tmp_path / "0001-folio.patch")
    code, out = run("check-patch", str(repo), str(folio), "-q")
    assert code == 0, out
    assert "refcount model folio" in out
    assert git(repo, "status", "--porcelain") == "" and header.read_text() == before
