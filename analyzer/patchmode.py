"""Patch and range mode: findings new in HEAD against BASE, like the kernel test robot.

Both revisions are scanned alike over the directories the change touches (its
subsystems: callers and callees of the touched functions mostly live there), with the
tree's include/, mm/ and arch/x86/include/ beside them (prototypes and the refcount
model); findings are matched by fingerprint, which ignores line numbers.

check-patch scans the tree itself as BASE, and as HEAD a temporary tree of hard links
to it (copies across file systems; definition folders the change leaves alone are
symbolic links to the tree's) in which only the patched files are new: with the fact
store, both sides read every unchanged file's facts from it. check-range
materializes both revisions with `git archive`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from analyzer import engine
from analyzer.factstore import FactStore
from analyzer.model import Finding, RunResult
from analyzer.program.tree import DEFINITION_ROOTS, TreeError, definition_files

# Where a side's tree comes from: "base" or "head" -> a context giving its root.
Sides = Callable[[str], AbstractContextManager[Path]]
_DIFF_FILE_RE = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?(\S+)", re.M)


@dataclass(frozen=True, slots=True)
class Comparison:
    base: RunResult
    head: RunResult
    new: tuple[Finding, ...]
    fixed: tuple[Finding, ...]
    touched: tuple[str, ...]  # files the change touches


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError as e:
        raise TreeError("git is not installed") from e
    except subprocess.CalledProcessError as e:
        raise TreeError(f"{repo}: git {' '.join(args)}: {e.stderr.strip()}") from e
    return out.stdout


def scan_dirs(touched: list[str]) -> list[str]:
    """The directories to scan for a change: those of the touched C files."""
    dirs = {str(Path(p).parent) for p in touched if p.endswith((".c", ".h"))}
    return sorted(d for d in dirs if d not in ("", "."))


def _scan_paths(touched: list[str]) -> list[str]:
    top_files = sorted(p for p in touched if "/" not in p and p.endswith((".c", ".h")))
    return scan_dirs(touched) + top_files


def _wanted(touched: list[str]) -> list[str]:
    """What a side's tree must hold: the scanned paths, the definition folders and the
    top Makefile (the version shown)."""
    return sorted({*_scan_paths(touched), *DEFINITION_ROOTS, "Makefile"})


def _compare(
    sides: Sides,
    touched: list[str],
    jobs: int,
    progress: engine.Progress | None,
    store: FactStore | None,
) -> Comparison:
    paths = _scan_paths(touched)
    results: dict[str, RunResult] = {}
    for side in ("base", "head"):
        with sides(side) as root:
            present = [p for p in paths if (root / p).exists()]
            results[side] = engine.scan(root, present, None, progress, jobs, store, functions=False)
    base, head = results["base"], results["head"]
    before = {f.fingerprint for f in base.findings}
    after = {f.fingerprint for f in head.findings}
    return Comparison(
        base,
        head,
        tuple(f for f in head.findings if f.fingerprint not in before),
        tuple(f for f in base.findings if f.fingerprint not in after),
        tuple(sorted(touched)),
    )


@contextmanager
def _temporary_root(side: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"krefaudit-{side}-") as tmp:
        yield Path(tmp)


def check_range(
    repo: Path,
    rev_range: str,
    jobs: int = 1,
    progress: engine.Progress | None = None,
    store: FactStore | None = None,
) -> Comparison:
    if ".." not in rev_range or rev_range.count("..") != 1 or "..." in rev_range:
        raise TreeError(f"{rev_range}: expected BASE..HEAD")
    base_rev, head_rev = rev_range.split("..")
    head_rev = head_rev or "HEAD"
    for rev in (base_rev, head_rev):
        _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    touched = _git(repo, "diff", "--name-only", base_rev, head_rev).split()

    @contextmanager
    def sides(side: str) -> Iterator[Path]:
        rev = base_rev if side == "base" else head_rev
        with _temporary_root(side) as root:
            present = _git(repo, "ls-tree", "--name-only", rev, "--", *_wanted(touched)).split()
            if present:
                archive = subprocess.run(
                    ["git", "-C", str(repo), "archive", rev, "--", *present],
                    capture_output=True,
                    check=True,
                ).stdout
                subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
            yield root

    return _compare(sides, touched, jobs, progress, store)


def patch_files(patch: str) -> list[str]:
    return sorted({p for p in _DIFF_FILE_RE.findall(patch) if p != "/dev/null"})


def check_patch(
    tree: Path,
    patches: list[Path],
    jobs: int = 1,
    progress: engine.Progress | None = None,
    store: FactStore | None = None,
) -> Comparison:
    if not tree.is_dir():
        raise TreeError(f"{tree}: not a directory (expected a kernel source tree)")
    texts = []
    for p in patches:
        try:
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            raise TreeError(f"{p}: cannot read: {e.strerror or e}") from e
    touched = sorted({f for t in texts for f in patch_files(t)})
    if not touched:
        raise TreeError(f"{patches[0]}: no file changes found (expected git diff output)")

    @contextmanager
    def patched() -> Iterator[Path]:
        with _temporary_root("head") as root:
            for rel in [*_scan_paths(touched), "Makefile"]:
                _link_tree(tree / rel, root / rel)
            # A definition folder the change leaves alone is a symbolic link to the
            # tree's: the run reads it, patch writes nothing there, and the 3,000 files
            # of include/ are neither linked nor removed one by one.
            shared = [d for d in DEFINITION_ROOTS if not any(_under(t, (d,)) for t in touched)]
            for rel in shared:
                if (tree / rel).is_dir() and not (root / rel).exists():
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).symlink_to((tree / rel).resolve(), target_is_directory=True)
            # In the others, the files context comes from, not the whole folder.
            for rel in definition_files(tree):
                if not _under(rel, shared) and not (root / rel).exists():
                    _link_tree(tree / rel, root / rel)
            for rel in touched:  # patch writes these: no longer links into the tree
                p = root / rel
                if p.is_file():
                    data = p.read_bytes()
                    p.unlink()
                    p.write_bytes(data)
            for p, text in zip(patches, texts, strict=True):
                done = subprocess.run(
                    ["patch", "-p1", "--batch", "--silent", "-d", str(root)],
                    input=text,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise TreeError(f"{p}: does not apply to {tree}: {done.stdout.strip()}")
            yield root

    return _compare(
        lambda side: nullcontext(tree) if side == "base" else patched(),
        touched,
        jobs,
        progress,
        store,
    )


def _under(path: str, folders: Sequence[str]) -> bool:
    """Whether `path` is one of `folders` or lies inside one."""
    return any(path == f or path.startswith(f + "/") for f in folders)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    """`src` (a file or folder) at `dst`, as hard links where the file system allows;
    symbolic links stay links, so the scan judges them as it would in the tree."""
    if src.is_symlink():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(os.readlink(src))
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    elif src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(str(src), str(dst))
