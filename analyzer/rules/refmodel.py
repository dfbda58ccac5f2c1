"""Which refcount model a tree has, read from its own definition of get_page().

get_page() is followed into the functions it calls (a few levels, through the tree's
headers and mm/), and the model is named by what it finds:
- a compound_lock acquisition on the way  -> locked-tail (3.2 to 4.4: serializes itself)
- folio_get / page_folio                  -> folio (5.16+: no tail refcount)
- a PageTail() branch without a lock      -> split-tail (<= 3.1: two unlocked increments)
- otherwise (compound_head, head only)    -> head-only (4.5+)
"""

from __future__ import annotations

import dataclasses
from collections import deque

from analyzer.dataflow.locks import LockAnalysis
from analyzer.ir import Function
from analyzer.model import Location, ModelEvidence, TraceStep
from analyzer.program.model import Program
from analyzer.rules.loader import KernelApi

_FOLIO = frozenset({"folio_get", "folio_ref_inc", "page_folio"})
_TAIL_TESTS = frozenset({"PageTail", "PageCompound", "compound_head_by_tail"})
_HEAD = frozenset({"compound_head", "compound_head_fast"})
MAX_DEPTH = 4


def _step(fn: Function, line: int, col: int, note: str) -> TraceStep:
    return TraceStep(Location(fn.path, line, col), fn.name, note)


def release_families(program: Program, api: KernelApi) -> tuple[str, ...]:
    """Which page-release families the tree declares (defines, prototypes or macros):
    put (references), unpin (FOLL_PIN pins, 5.6+), any (put_user_page*, 5.3 to 5.5)."""

    def declared(name: str, arg: int | None) -> bool:
        if name in program.macro_aliases:
            return True
        params = program.prototypes.get(name)
        if params is None or arg is None or arg >= len(params):
            return False
        # A namesake on another type is another function (6.12 mm/swap.c has a static
        # page_cache_release() of a folio, for the LRU).
        return params[arg].type.struct in (None, "page")

    out = []
    for family in ("put", "unpin", "any"):
        names = sorted(
            n
            for n, spec in api.release.release.items()
            if spec.family == family
            and declared(n, spec.page if spec.page is not None else spec.pages)
        )
        if names:
            out.append(f"{family}: {', '.join(names)}")
    return tuple(out)


def detect(
    program: Program, api: KernelApi, locks: LockAnalysis, override: str | None = None
) -> ModelEvidence:
    return dataclasses.replace(
        _detect(program, api, locks, override), release_families=release_families(program, api)
    )


def _detect(
    program: Program, api: KernelApi, locks: LockAnalysis, override: str | None
) -> ModelEvidence:
    models = api.refs.models
    if override is not None:
        m = models[override]
        return ModelEvidence(m.name, m.summary, "override")
    defs = sorted(program.any_definition("get_page"), key=lambda f: (f.path, f.loc))
    if not defs:
        m = models[api.refs.default_model]
        return ModelEvidence(m.name, m.summary, "default")
    root = defs[0]
    # Breadth-first through the callees, remembering how each was reached.
    parents: dict[str, tuple[Function, TraceStep] | None] = {root.key: None}
    queue: deque[tuple[Function, int]] = deque([(root, 0)])
    verdict: tuple[str, Function, TraceStep] | None = None
    tail_seen: tuple[Function, TraceStep] | None = None
    head_seen: tuple[Function, TraceStep] | None = None
    while queue and verdict is None:
        fn, depth = queue.popleft()
        for site, targets in program.callees(fn):
            call = site.call
            name = program.canonical(call.callee or "")
            step = _step(fn, call.loc.line, call.loc.col, f"{fn.name}() calls {name}()")
            spec = locks.spec(call)
            if spec is not None and spec.acquire is not None and spec.cls == "compound":
                verdict = ("locked-tail", fn, step)
                break
            if name in _FOLIO:
                verdict = ("folio", fn, step)
                break
            if name in _TAIL_TESTS and tail_seen is None:
                tail_seen = (fn, step)
            if name in _HEAD and head_seen is None:
                head_seen = (fn, step)
            if depth + 1 < MAX_DEPTH:
                for t in targets:
                    if t.key not in parents:
                        parents[t.key] = (fn, step)
                        queue.append((t, depth + 1))
    if verdict is not None:
        name, fn, step = verdict
    elif tail_seen is not None:
        name, (fn, step) = "split-tail", tail_seen
    elif head_seen is not None:
        name, (fn, step) = "head-only", head_seen
    else:
        name, fn = "head-only", root
        step = _step(root, root.loc.line, root.loc.col, "get_page() has no tail-page branch")
    chain = [step]
    link = parents.get(fn.key)
    while link is not None:
        chain.append(link[1])
        link = parents.get(link[0].key)
    m = models[name]
    first = _step(root, root.loc.line, root.loc.col, "get_page() is defined here")
    *path, last = [first, *reversed(chain)]
    verdict_step = TraceStep(
        last.location, last.function, f"{last.note}: refcount model {m.name} ({m.summary})"
    )
    return ModelEvidence(m.name, m.summary, "tree", (*path, verdict_step))
