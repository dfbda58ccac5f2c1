"""Read the expectations fixture files mark in their comments.

get_page(pages[i]);              /* expect: tail-ref-race */
/* expect@+1: tail-ref-race */   (the finding is N lines below; @-N above)
get_page(p);                     /* ok: tail-ref-race */  (no finding on this line)
get_page(q);                     /* todo-expect: tail-ref-race */  (known miss: strict xfail)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER_RE = re.compile(
    r"(?:/\*|//)\s*(?P<kind>expect|ok|todo-expect)(?:@(?P<off>[+-]\d+))?:\s*(?P<rules>[\w-]+(?:\s*,\s*[\w-]+)*)"
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass(frozen=True)
class Marker:
    kind: str  # expect | ok | todo-expect
    line: int  # the line the marker speaks of
    rule: str


def markers(path: Path) -> list[Marker]:
    out = []
    for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for m in MARKER_RE.finditer(text):
            target = lineno + int(m.group("off") or 0)
            for rule in re.split(r"\s*,\s*", m.group("rules")):
                out.append(Marker(m.group("kind"), target, rule))
    return out


def fixture_trees() -> dict[Path, list[str]]:
    """Each tree root and the fixture files it holds, relative to it. fixtures/ is one
    tree (with include/kstubs.h); every folder under fixtures/models/ is a tree of its own
    (with its own include/), for the refcount models of other kernel versions."""
    trees: dict[Path, list[str]] = {}
    models = FIXTURES / "models"
    for c in sorted(FIXTURES.rglob("*.c")):
        root = models / c.relative_to(models).parts[0] if models in c.parents else FIXTURES
        trees.setdefault(root, []).append(c.relative_to(root).as_posix())
    return trees
