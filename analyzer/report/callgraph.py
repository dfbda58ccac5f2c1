"""The call graph as a product: who calls what, from where, with which locks held."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from analyzer.dataflow.locks import LockAnalysis
from analyzer.ir import Function
from analyzer.program.model import Program


@dataclass(frozen=True, slots=True)
class Edge:
    caller: str
    callee: str
    path: str
    line: int
    indirect: bool
    held: tuple[str, ...]  # "class:lock" held on every path to the call


def edges(
    program: Program, locks: LockAnalysis | None, around: str | None = None, depth: int = 2
) -> list[Edge]:
    """Call edges among the scanned functions; with `around`, only those within `depth`
    calls of the functions of that name (callers and callees)."""
    chosen: set[str] | None = None
    if around is not None:
        start = [fn for fn in program.functions() if fn.name == around]
        chosen = {fn.key for fn in start}
        frontier: deque[tuple[Function, int]] = deque((fn, 0) for fn in start)
        while frontier:
            fn, d = frontier.popleft()
            if d >= depth:
                continue
            near = [t for _s, ts in program.callees(fn) for t in ts]
            near += [s.caller for s in program.callers(fn)]
            for other in near:
                if other.key not in chosen:
                    chosen.add(other.key)
                    frontier.append((other, d + 1))
    out: list[Edge] = []
    for fn in program.functions():
        if chosen is not None and fn.key not in chosen:
            continue
        for site, targets in program.callees(fn):
            for t in targets:
                if chosen is not None and t.key not in chosen:
                    continue
                held: tuple[str, ...] = ()
                if locks is not None:
                    held = tuple(sorted(f"{c}:{n}" for c, n in locks.held_at(fn, site.node)))
                out.append(Edge(fn.key, t.key, fn.path, site.ref.line, site.ref.indirect, held))
    return sorted(set(out), key=lambda e: (e.caller, e.path, e.line, e.callee))


def render_dot(es: list[Edge]) -> str:
    lines = ["digraph callgraph {", '  node [shape=box, fontname="monospace"];']
    for e in es:
        label = f"{e.path}:{e.line}"
        if e.held:
            label += "\nheld: " + ", ".join(e.held)
        style = ", style=dashed" if e.indirect else ""
        caller, callee, text = (json.dumps(x) for x in (e.caller, e.callee, label))
        lines.append(f"  {caller} -> {callee} [label={text}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_json(es: list[Edge]) -> str:
    return (
        json.dumps(
            {
                "edges": [
                    {
                        "caller": e.caller,
                        "callee": e.callee,
                        "path": e.path,
                        "line": e.line,
                        "indirect": e.indirect,
                        "held": list(e.held),
                    }
                    for e in es
                ]
            },
            indent=2,
        )
        + "\n"
    )
