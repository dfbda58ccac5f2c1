"""A kernel source tree: which files a run reads, and where the tree defines a name."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Where definitions of primitives and prototypes of kernel APIs live, searched in order.
# (directory, recursive, file name endings)
_DEFINITION_DIRS = (
    ("include/linux", True, (".h",)),
    ("include/asm-generic", False, (".h",)),
    ("include", False, (".h",)),
    ("mm", False, (".c", ".h")),
    ("arch/x86/include", True, (".h",)),
)


class TreeError(Exception):
    """The tree or a requested path is unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class Discovery:
    files: tuple[str, ...]  # .c and .h files to analyze, relative to the tree, sorted
    problems: tuple[str, ...]  # requested paths that are not C sources, one line each


def _inside(root: Path, p: Path) -> bool:
    try:
        p.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def discover(tree: Path, paths: list[str]) -> Discovery:
    """The .c and .h files under `paths` (files or directories, relative to `tree`): a
    subsystem's headers hold its struct definitions and static inline functions. Symbolic
    links that lead outside the tree are not followed, nor linked folders inside it."""
    if not tree.is_dir():
        raise TreeError(f"{tree}: not a directory (expected a kernel source tree)")
    root = tree.resolve()
    files: set[str] = set()
    problems: list[str] = []
    for rel in paths:
        p = tree / rel
        if not p.exists():
            problems.append(f"{rel}: no such file or directory in {tree}")
        elif not _inside(root, p):
            problems.append(f"{rel}: leads outside the tree; not followed")
        elif p.is_dir():
            files.update(_sources(root, p.resolve()))
        elif p.suffix in (".c", ".h"):
            files.add(p.resolve().relative_to(root).as_posix())
        else:
            problems.append(f"{rel}: not a C source file")
    return Discovery(tuple(sorted(files)), tuple(problems))


def _sources(root: Path, folder: Path) -> Iterator[str]:
    """The .c and .h files under `folder`, a real path inside `root`, relative to `root`.
    Walking with scandir's cached file types, only symbolic links are resolved: on the
    whole tree that is 30 times faster than resolving every path."""
    skip = len(os.path.join(root, ""))
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif not e.name.endswith((".c", ".h")):
                    continue
                elif not e.is_symlink():
                    if e.is_file(follow_symlinks=False):
                        yield e.path[skip:]
                elif _inside(root, Path(e.path)) and Path(e.path).is_file():
                    yield Path(e.path).resolve().relative_to(root).as_posix()


# The top folders of the definition search: what patch mode puts beside a change.
DEFINITION_ROOTS = ("include", "mm", "arch/x86/include")


def definition_files(tree: Path) -> list[str]:
    """The files searched for definitions, in search order: what a run's context can
    come from, and so part of what a cached result depends on. Within a folder, files
    come in path order (component by component); linked folders are not entered."""
    found: dict[str, None] = {}
    top = os.fspath(tree)
    for d, recursive, endings in _DEFINITION_DIRS:
        base = os.path.join(top, d)
        if os.path.isdir(base):
            found.update(dict.fromkeys(_definition_walk(base, d, recursive, endings)))
    return list(found)


def _definition_walk(folder: str, rel: str, recursive: bool, endings: tuple[str, ...]) -> list[str]:
    """Files (or links to files) under `folder`, whose path relative to the tree is
    `rel`, with one of the name `endings`, sorted by path components."""
    out: list[tuple[tuple[str, ...], str]] = []
    stack = [(folder, tuple(rel.split("/")))]
    while stack:
        path, parts = stack.pop()
        with os.scandir(path) as entries:
            for e in entries:
                if recursive and e.is_dir(follow_symlinks=False):
                    stack.append((e.path, (*parts, e.name)))
                elif e.name.endswith(endings) and e.is_file():
                    out.append(((*parts, e.name), "/".join((*parts, e.name))))
    out.sort()
    return [rel for _parts, rel in out]


class DefinitionIndex:
    """Finds the files of a tree that define (or declare) a name, reading them lazily;
    each name is looked up once."""

    def __init__(self, tree: Path, files: list[str]) -> None:
        """`files`: definition_files(tree)."""
        self.tree = tree
        self.files = files
        self._texts: dict[str, bytes] | None = None
        self._found: dict[str, frozenset[str]] = {}

    def _load(self) -> dict[str, bytes]:
        if self._texts is None:
            texts: dict[str, bytes] = {}
            for rel in self.files:
                try:
                    texts[rel] = (self.tree / rel).read_bytes()
                except OSError:
                    continue
            self._texts = texts
        return self._texts

    def files_defining(self, names: set[str]) -> list[str]:
        """Files with a definition, macro or prototype of any of `names`, in the order
        of `files`."""
        self._search(names)
        hits = frozenset().union(*(self._found[n] for n in names))
        return [rel for rel in self._load() if rel in hits]

    def _search(self, names: set[str]) -> None:
        """Look up the names not looked up yet. A name that holds a shorter one is only
        searched for in the files that hold the shorter one (get_user_pages_fast where
        get_user_pages is): the bytes each file is scanned for are few."""
        texts = self._load()
        todo = sorted((n for n in names if n not in self._found), key=lambda n: (len(n), n))
        holding: dict[bytes, list[str]] = {}
        for name in todo:
            word = name.encode()
            within = next((c for c in holding if c in word), None)
            candidates = texts if within is None else holding[within]
            holding[word] = [rel for rel in candidates if word in texts[rel]]
            self._found[name] = frozenset(
                rel for rel in holding[word] if _defines(texts[rel], word)
            )


_DEFINE = re.compile(rb"[ \t]*#[ \t]*define[ \t]+")  # a line's start, up to the macro name
_DECLARATOR = re.compile(rb"[ \t]*\([^;{}]*\)[^;{}]*[;{]")  # after a function's name
_WORD_BYTES = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def _defines(text: bytes, word: bytes) -> bool:
    """Whether `text` holds a #define of `word`, or `word` as a whole word followed by a
    parenthesized list and, before any brace, a `;` or `{`: a prototype or a definition
    (or a call; the search only narrows what is parsed). Each occurrence is checked where
    it stands: a pattern that starts with an anchor would be tried at every byte."""
    i = text.find(word)
    while i >= 0:
        end = i + len(word)
        if (i == 0 or text[i - 1] not in _WORD_BYTES) and (
            end == len(text) or text[end] not in _WORD_BYTES
        ):
            line = text.rfind(b"\n", 0, i) + 1
            if _DEFINE.fullmatch(text, line, i) or _DECLARATOR.match(text, end):
                return True
        i = text.find(word, i + 1)
    return False


_VERSION_RE = re.compile(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d+)", re.M)


def kernel_version(tree: Path) -> str | None:
    """The version the tree's top Makefile declares, e.g. "6.1.0"; for the report only:
    the analysis reads the tree's code, not its version number."""
    try:
        text = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError:
        return None
    parts = dict(_VERSION_RE.findall(text))
    if "VERSION" not in parts:
        return None
    return f"{parts['VERSION']}.{parts.get('PATCHLEVEL', '0')}.{parts.get('SUBLEVEL', '0')}"
