"""Patch and range mode: findings new in HEAD against BASE, like the kernel test robot.

Both revisions are materialized side by side in temporary folders, holding the
directories the change touches (its subsystems: callers and callees of the touched
functions mostly live there) plus include/ and mm/ (prototypes and the refcount model),
and scanned alike; findings are matched by fingerprint, which ignores line numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyzer import engine
from analyzer.factstore import FactStore
from analyzer.model import Finding, RunResult
from analyzer.program.tree import TreeError

# Always present on both sides: where prototypes and get_page() live.
CONTEXT_DIRS = ("include", "mm")
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


def _compare(
    materialize: Callable[[str, Path, list[str]], None],
    touched: list[str],
    jobs: int,
    progress: engine.Progress | None,
    store: FactStore | None,
) -> Comparison:
    dirs = scan_dirs(touched)
    top_files = sorted(p for p in touched if "/" not in p and p.endswith((".c", ".h")))
    paths = dirs + top_files
    results: dict[str, RunResult] = {}
    with tempfile.TemporaryDirectory(prefix="krefaudit-") as tmp:
        for side in ("base", "head"):
            root = Path(tmp) / side
            root.mkdir()
            materialize(side, root, sorted(set(dirs) | set(CONTEXT_DIRS)) + top_files)
            present = [p for p in paths if (root / p).exists()]
            results[side] = engine.scan(root, present or ["."], None, progress, jobs, store)
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

    def materialize(side: str, root: Path, wanted: list[str]) -> None:
        rev = base_rev if side == "base" else head_rev
        present = _git(repo, "ls-tree", "--name-only", rev, "--", *wanted).split()
        if not present:
            return
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "--", *present],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)

    return _compare(materialize, touched, jobs, progress, store)


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

    def materialize(side: str, root: Path, wanted: list[str]) -> None:
        for rel in wanted:
            src = tree / rel
            if src.is_dir():
                shutil.copytree(src, root / rel, symlinks=False, dirs_exist_ok=True)
            elif src.is_file():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / rel)
        if side == "head":
            for p, text in zip(patches, texts, strict=True):
                done = subprocess.run(
                    ["patch", "-p1", "--batch", "--silent", "-d", str(root)],
                    input=text,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise TreeError(f"{p}: does not apply to {tree}: {done.stdout.strip()}")

    return _compare(materialize, touched, jobs, progress, store)
