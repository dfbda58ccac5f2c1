"""Read one C file, normalize it, parse it with tree-sitter-c and lower it to IR."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import tree_sitter_c
from tree_sitter import Language, Parser

from analyzer.frontend.lower import lower_file
from analyzer.frontend.normalize import normalize
from analyzer.ir import FileIR, shape_of

# Files larger than this are not parsed: the kernel's largest .c file is about 1.5 MB of
# source; anything far beyond is generated data, not code worth a lock analysis.
MAX_FILE_BYTES = 32 * 1024 * 1024


class InputError(Exception):
    """A file that cannot be analyzed at all; the message names the file and why."""


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_c.language()))


def check_source(data: bytes, path: str) -> str | None:
    """Why `data` is not C source we analyze, or None. Invalid UTF-8 is accepted (the
    kernel has Latin-1 comments); NUL bytes mean a binary file."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        return f"{path}:{line}: NUL byte in source: not a text file"
    if len(data) > MAX_FILE_BYTES:
        return f"{path}: {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit"
    return None


def parse_bytes(data: bytes, rel: str) -> FileIR:
    problem = check_source(data, rel)
    if problem is not None:
        raise InputError(problem)
    norm = normalize(data)
    tree = _parser().parse(norm.text)
    file_ir = lower_file(tree.root_node, rel, [(a.offset, a.kind, a.arg) for a in norm.annotations])
    file_ir.exports = norm.exports
    file_ir.shape = shape_of(file_ir)
    return file_ir


def parse_file(path: Path, rel: str) -> FileIR:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{rel}: cannot read: {e.strerror or e}") from e
    return parse_bytes(data, rel)


def parse_only(data: bytes) -> None:
    """Bare tree-sitter parse: the floor the benchmarks compare against."""
    _parser().parse(data)
