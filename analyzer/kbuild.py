"""kbuild integration: `make C=1 CHECK="krefaudit kbuild-check"` (or C=2).

kbuild runs `$(CHECK) $(CHECKFLAGS) $(c_flags) file.c` from the top of the tree for every
C file it compiles, with the flags sparse receives. kbuild-check accepts all of them,
checks the file and prints gcc-style lines.

Two modes:
- raw (default): the file is analyzed as written, with the tree's headers as context;
- precise (--precise): the file is preprocessed by the compiler with the real flags
  (`gcc -E`), so locks hidden in macros and configuration-dependent code are seen as
  built; the expanded text is analyzed and every location is mapped back to the file
  and line it came from through the `# line "file"` markers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from analyzer import engine
from analyzer.model import Finding, Location, RunResult, TraceStep

# Flags that only sparse understands, or that make no sense for `gcc -E`.
_DROP_EXACT = {
    "-mlittle-endian",
    "-mbig-endian",
    "-c",
    "-S",
    "-E",
    "-MD",
    "-MMD",
    "-MP",
    "-D__STDC__",  # sparse's; the compiler defines it and refuses a redefinition
}
_DROP_PREFIX = ("--arch=", "-Wp,", "-MF", "-MT", "-MQ", "-o")
_WITH_VALUE = {
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-I",
    "-D",
    "-U",
    "-MF",
    "-MT",
    "-MQ",
    "-o",
    "-x",
}
_MARKER_RE = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Invocation:
    source: str  # the checked file, as kbuild passes it (relative to the tree top)
    cpp_flags: tuple[str, ...]  # what `gcc -E` gets


def parse_args(args: list[str]) -> Invocation:
    """Split what kbuild passes into the source file and the preprocessor's flags."""
    source = None
    flags: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        value = args[i + 1] if a in _WITH_VALUE and i + 1 < len(args) else None
        if a.endswith((".c", ".h")) and not a.startswith("-") and value is None:
            source = a
        elif a in _DROP_EXACT or a.startswith(_DROP_PREFIX) or a.startswith("-W"):
            pass
        elif value is not None:
            if a not in ("-MF", "-MT", "-MQ", "-o"):
                flags += [a, value]
            i += 1
        elif a.startswith("-"):
            flags.append(a)
        i += 1
    if source is None:
        raise ValueError("no C source file among the arguments")
    return Invocation(source, tuple(flags))


def line_map(preprocessed: str) -> list[tuple[str, int]]:
    """For each line of `gcc -E` output (1-based index - 1): the file and line it came
    from, read from the line markers."""
    out: list[tuple[str, int]] = []
    current, line = "<unknown>", 1
    for text in preprocessed.split("\n"):
        m = _MARKER_RE.match(text)
        if m:
            out.append((current, line))
            current, line = m.group(2).encode().decode("unicode_escape"), int(m.group(1))
            continue
        out.append((current, line))
        line += 1
    return out


def _relative(path: str, tree: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(tree.resolve()).as_posix()
        except ValueError:
            return path
    return p.as_posix()


def _remap(result: RunResult, rel: str, lines: list[tuple[str, int]], tree: Path) -> RunResult:
    def loc(old: Location) -> Location:
        if old.path != rel or not 0 < old.line <= len(lines):
            return old
        path, line = lines[old.line - 1]
        return Location(_relative(path, tree), line, old.column)

    def step(s: TraceStep) -> TraceStep:
        return dataclasses.replace(s, location=loc(s.location))

    def finding(f: Finding) -> Finding:
        return dataclasses.replace(
            f, location=loc(f.location), trace=tuple(step(s) for s in f.trace)
        )

    model = result.refcount_model
    return dataclasses.replace(
        result,
        findings=tuple(sorted((finding(f) for f in result.findings), key=lambda f: f.sort_key)),
        refcount_model=dataclasses.replace(model, evidence=tuple(step(s) for s in model.evidence)),
    )


def check(
    inv: Invocation,
    tree: Path,
    precise: bool,
    compiler: str = "gcc",
    refcount_model: str | None = None,
) -> RunResult:
    if not precise:
        return engine.scan(tree, [inv.source], refcount_model)
    cmd = [compiler, "-E", *inv.cpp_flags, inv.source]
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise ValueError(f"{inv.source}: preprocessing failed: {done.stderr.strip()[:2000]}")
    text = done.stdout
    with tempfile.TemporaryDirectory(prefix="krefaudit-kbuild-") as tmp:
        root = Path(tmp)
        target = root / inv.source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_strip_markers(text), encoding="utf-8")
        result = engine.scan(root, [inv.source], refcount_model)
    result = dataclasses.replace(result, tree=os.fspath(tree))
    return _remap(result, inv.source, line_map(text), tree)


def _strip_markers(text: str) -> str:
    """Line markers become empty lines, so line numbers of the text stay those of the
    `gcc -E` output that line_map() describes."""
    return "\n".join("" if _MARKER_RE.match(ln) else ln for ln in text.split("\n"))
