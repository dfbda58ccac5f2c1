"""Page ownership: what a function does with the pages the GUP family gives it.

Each GUP call (or call of a helper that behaves like one) is an acquisition. Along a path
its obligation is a token: held, released or handed off, together with what the path has
learned about the call's result. A GUP array call returns the number of pages it got,
which may be fewer than asked, or a negative errno with no page held; branches on the
result narrow it to some of these cases:

    neg   an error: nothing is held          part  fewer pages than asked: `ret` held
    zero  nothing was asked, nothing held    full  every page asked for is held

Tokens with different cases stay apart, so `if (ret != nr) return -EFAULT;` is seen
holding `ret` pages on its way out while the fall-through holds all of them. The
analysis reports events, judged by the release rules (analyzer/rules/release.py):

- leak: a return with pages still held, neither released nor handed off;
- over-release: a release bounded by the requested count where fewer may be held, a
  negative result used as an unsigned count, a second release on the same path;
- mismatch: pinned pages released as references, or references released as pins.

Functions are summarized on demand, for their callers: what each page parameter meets
(released, kept, only borrowed), and whether the function fills a page-array parameter
the way GUP does (returning the count, or 0 with every page held and a negative errno
with none).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

from analyzer.dataflow.provenance import pages_arg
from analyzer.dataflow.solver import BudgetExceeded, ForwardSolver
from analyzer.ir import (
    CFG,
    AddrOf,
    Call,
    Const,
    Deref,
    Expr,
    Field,
    Function,
    Index,
    Kind,
    Loc,
    Name,
    Op,
    Param,
    peel,
    render,
    subexpressions,
)
from analyzer.model import Location, TraceStep
from analyzer.program.model import Program
from analyzer.rules.loader import KernelApi

NEG, ZERO, PART, FULL = "neg", "zero", "part", "full"
ALL = frozenset({NEG, ZERO, PART, FULL})
NONE: frozenset[str] = frozenset()
HELD, RELEASED, HANDED = "held", "released", "handed-off"
# In a token's names: the variable passed as the requested count was assigned since.
_NEW_REQUEST = "!requested"
# How deep on-demand summaries of callees go before a callee is assumed to keep pages.
MAX_SUMMARY_DEPTH = 6

# What each kind of result leaves held, per case.
_HOLDS = {
    "count": frozenset({PART, FULL}),  # a page count: 0 < ret
    "bytes": frozenset({PART, FULL}),  # a byte count: 0 < ret
    "status": frozenset({ZERO}),  # a helper's 0 means every page is held
    "page": frozenset({FULL}),  # a page pointer: neither NULL nor an ERR_PTR
}
# Cases where no page is held, whatever the kind of result.
_NOTHING = frozenset({NEG, ZERO})
# Cases where releasing the requested count releases pages that are not held.
_SHORT = {"count": frozenset({NEG, PART}), "status": frozenset({NEG})}


@dataclass(frozen=True, slots=True)
class Acquisition:
    id: int
    node: int
    loc: Loc
    source: str  # the GUP call, or the helper behaving like one
    key: str  # the array's (or page's) access path, as rendered: pages, dio->pages
    single: bool  # `key` is one page, not an array
    owner: str  # local | caller (a parameter's or a struct's array) | seed (a parameter)
    result: str  # count | bytes | status | page
    requested: Expr | None  # the page count asked for
    family: str  # pin | get | either
    param: int = -1  # the parameter a seed stands for
    how: str = ""  # how the call took the pages, for traces
    field: str = ""  # a seed for the page array in this field of the parameter's struct
    # The pages went into the array from some index on (`&pages[n]`, `pages + n`): a
    # release of the array then covers other acquisitions too, so its bound and a
    # second release are not judged.
    offset: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    acq: int
    status: str
    cases: frozenset[str]
    rel: int = -1  # the release's node
    # Released by a loop over the array, or referenced again with get_page(): a second
    # release is then not judged (loops run many times; extra references need extra puts).
    loose: bool = False
    negs: frozenset[str] = NONE  # locals holding a negative errno on this path
    # Locals holding the call's result on this path (and `@line:col` for the call itself
    # when it is tested in place): kept per path, so `nr = 0` on one branch and
    # `nr = ret` on another do not blur.
    names: frozenset[str] = NONE
    # Conditions on values the function never changes, as this path decided them: a
    # later test of the same condition can only go the same way.
    facts: frozenset[tuple[str, bool]] = frozenset()


Aliases = AbstractSet[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class State:
    tokens: frozenset[Token]
    # (`*`name, acquisition): copies of a page; (`~`name, acquisition): its folio
    aliases: frozenset[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class ParamEffect:
    kind: str  # release | keep | borrow
    family: str = "any"
    bound: int | None = None  # the parameter that gives how many are released


@dataclass(frozen=True, slots=True)
class AcquireSummary:
    param: int  # the page-array parameter the function fills
    requested: int | None  # the parameter passed on as the requested count
    family: str
    result: str  # count | status
    source: str  # the GUP call inside


@dataclass(frozen=True, slots=True)
class Summary:
    params: dict[int, ParamEffect] = field(default_factory=dict)
    acquire: AcquireSummary | None = None
    # Page arrays the function releases in a struct a parameter points to:
    # (parameter, field) -> the release (free_user_pages(bo, n) puts bo->pages[0..n)).
    fields: dict[tuple[int, str], ParamEffect] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # leak | over-release | mismatch
    detail: str  # leak: the returned text; over-release: requested | negative | twice
    function: Function
    acquisition: Acquisition
    node: int
    loc: Loc
    release: str | None  # the release primitive or helper
    cases: frozenset[str]
    trace: tuple[TraceStep, ...]
    release_family: str = ""


@dataclass(frozen=True, slots=True)
class LoopRelease:
    """A loop that releases (or hands off) the elements of an array, one per iteration:
    when it ends, the whole array has been, even if it ran no iteration at all."""

    node: int  # the release inside the loop
    header: int  # the branch that ends the loop
    exit: bool  # the polarity of the header's edge out of the loop
    key: str  # the array
    bound: Expr | None  # how many elements the loop covers
    status: str = RELEASED  # or HANDED


def _names(e: Expr | None) -> Iterator[str]:
    """The variable names an expression mentions."""
    return (x.id for x in subexpressions(e) if isinstance(x, Name))


def _root(e: Expr) -> Name | None:
    while True:
        e = peel(e, AddrOf)
        match e:
            case Name():
                return e
            case Field(base=b) | Index(base=b) | Deref(operand=b):
                e = b
            case Op(op=op, operands=ops) if op in ("+", "-") and ops:
                e = ops[0]
            case _:
                return None


_MOVES = frozenset({"+", "-", "post++", "pre++", "post--", "pre--"})


def _offset(e: Expr) -> bool:
    """Whether an array argument starts past element 0: `&pages[n]`, `pages + n`."""
    e = peel(e, Deref)
    if isinstance(e, AddrOf) and isinstance(peel(e.operand, AddrOf), Index):
        index = peel(e.operand, AddrOf).index  # type: ignore[union-attr]
        return not _is_zero(index)
    return isinstance(e, Op) and e.op in ("+", "-") and len(e.operands) == 2


def _array_of(e: Expr) -> Expr:
    """The array an element expression indexes: `pages[i]`, `*(pages + i)` -> `pages`."""
    match peel(e, AddrOf):
        case Index(base=b) | Deref(operand=b):
            b = peel(b, AddrOf)
            if isinstance(b, Op) and b.op in _MOVES and b.operands:
                return peel(b.operands[0], AddrOf)  # pages + i, *pages++
            return b
    return e


def _is_zero(e: Expr) -> bool:
    e = peel(e, AddrOf)
    return (isinstance(e, Const) and e.text in ("0", "0L", "0UL", "NULL")) or (
        isinstance(e, Name) and e.id == "NULL"
    )


def _negative_const(e: Expr) -> bool:
    e = peel(e, AddrOf)
    return isinstance(e, Op) and e.op == "-" and len(e.operands) == 1


# Cases where `ret OP 0` (and `ret OP requested`) is true; false is the complement.
_VS_ZERO = {
    "<": frozenset({NEG}),
    "<=": frozenset({NEG, ZERO}),
    ">": frozenset({PART, FULL}),
    ">=": frozenset({ZERO, PART, FULL}),
    "==": frozenset({ZERO}),
    "!=": frozenset({NEG, PART, FULL}),
}
_VS_REQUESTED = {
    "<": frozenset({NEG, ZERO, PART}),
    "<=": ALL,
    ">": NONE,
    ">=": frozenset({FULL}),
    "==": frozenset({FULL}),
    "!=": frozenset({NEG, ZERO, PART}),
}
_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


class _Ctx:
    """One function's analysis: its acquisitions, release loops and summary-in-progress."""

    def __init__(self, fn: Function, depth: int) -> None:
        self.fn = fn
        self.depth = depth
        self.acqs: dict[int, Acquisition] = {}
        self.plain: set[int] = set()  # calls (node * 64 + index) that acquire nothing
        self.loops: dict[int, LoopRelease] = {}
        self.exits: dict[tuple[int, bool], list[LoopRelease]] = {}
        self.events: list[Event] | None = None  # set while reporting
        # (parameter, field or "") -> what the function does to its pages
        self.seed_releases: dict[tuple[int, str], ParamEffect] = {}
        self.seed_kept: set[int] = set()
        # Local pointers into a local array (`pages = pvec + n`), by the array's name.
        self.points: dict[str, str] = {}
        # Branch node -> its condition, when it tests only values the function never
        # changes (parameters never assigned, constants); and the conditions that hold
        # at a node because every path to it decided them.
        self.invariant: dict[int, str] = {}
        self.decided: dict[int, frozenset[tuple[str, bool]]] = {}


class Ownership:
    def __init__(self, program: Program, api: KernelApi) -> None:
        self.program = program
        self.api = api
        self.rel = api.release
        self.gup = api.gup
        self.summaries: dict[str, Summary] = {}
        self.events: list[Event] = []
        self.skipped: list[tuple[Function, str]] = []
        self.acquisitions = 0  # acquisitions seen in the scanned files
        self._busy: set[str] = set()

    # ---------------------------------------------------------------- driver
    def run(self) -> list[Event]:
        """Analyze every scanned function that takes pages, directly or through a
        helper; events come back in file and line order."""
        work = deque(self.program.calling(self.gup.array | self.rel.single.keys()))
        seen = {fn.key for fn in work}
        while work:
            fn = work.popleft()
            if self.summary(fn, 0).acquire is not None:
                for site in self.program.callers(fn):
                    if site.caller.key not in seen and site.caller.path in self.program.files:
                        seen.add(site.caller.key)
                        work.append(site.caller)
        return sorted(
            self.events,
            key=lambda e: (e.function.path, e.loc, e.kind, e.detail, e.acquisition.id, e.node),
        )

    def summary(self, fn: Function, depth: int) -> Summary:
        if fn.key in self.summaries:
            return self.summaries[fn.key]
        if fn.key in self._busy or depth > MAX_SUMMARY_DEPTH:
            return Summary({i: ParamEffect("keep") for i in range(len(fn.params))})
        self._busy.add(fn.key)
        try:
            result = self._analyze(fn, depth)
        except BudgetExceeded as e:
            self.skipped.append((fn, str(e)))
            result = Summary({i: ParamEffect("keep") for i in range(len(fn.params))})
        finally:
            self._busy.discard(fn.key)
        self.summaries[fn.key] = result
        return result

    # ---------------------------------------------------------------- one function
    def _analyze(self, fn: Function, depth: int) -> Summary:
        ctx = _Ctx(fn, depth)
        for name, t in fn.locals.items():
            if t.struct == "page" and t.ptr >= 2 and not self._is_param(fn, name):
                inside = self._into_local_array(fn, name)
                if inside is not None:
                    ctx.points[name] = inside[0].id
        entry = State(frozenset(self._seeds(ctx)), frozenset())
        self._find_loops(ctx)
        self._find_invariants(ctx)
        solver: ForwardSolver[State] = ForwardSolver(
            lambda n, s: self._transfer(ctx, n, s),
            _join,
            lambda p, pol, s: self._edge(ctx, p, pol, s),
        )
        ins, outs = solver.solve(fn.cfg, entry)
        report = fn.path in self.program.files
        ctx.events = []
        for n in sorted(ins):
            self._transfer(ctx, n, ins[n])  # again, now recording events
        summary = self._exits(ctx, outs)
        if report:
            self.acquisitions += sum(a.owner != "seed" for a in ctx.acqs.values())
            # Tokens of one acquisition that differ in their cases can meet the same
            # event; they come in set order, so the witness kept is chosen by its trace:
            # the shortest, then the first.
            best: dict[tuple[str, str, int, int], Event] = {}
            for ev in ctx.events:
                k = (ev.kind, ev.detail, ev.acquisition.id, ev.node)
                ev = replace(ev, trace=self._trace(ctx, ins, ev))
                if k not in best or _trace_rank(ev) < _trace_rank(best[k]):
                    best[k] = ev
            self.events.extend(best.values())
        return summary

    def _seeds(self, ctx: _Ctx) -> list[Token]:
        """A token for each page or page-array parameter: what the function does with
        it becomes its summary."""
        out = []
        for i, p in enumerate(ctx.fn.params):
            if p.name is None or p.type.struct != "page" or p.type.ptr not in (1, 2):
                continue
            acq = Acquisition(
                id=-(i + 1),
                node=CFG.ENTRY,
                loc=ctx.fn.loc,
                source=ctx.fn.name,
                key=p.name,
                single=p.type.ptr == 1,
                owner="seed",
                result="page",
                requested=None,
                family="either",
                param=i,
            )
            ctx.acqs[acq.id] = acq
            out.append(Token(acq.id, HELD, frozenset({FULL})))
        for i, p in enumerate(ctx.fn.params):
            if p.name is None or p.type.struct in (None, "page") or p.type.ptr != 1:
                continue
            for k, fname in enumerate(self._page_array_fields(ctx.fn, p.name, p.type.struct)):
                acq = Acquisition(
                    id=-(1000 * (i + 1) + k),
                    node=CFG.ENTRY,
                    loc=ctx.fn.loc,
                    source=ctx.fn.name,
                    key=f"{p.name}->{fname}",
                    single=False,
                    owner="seed",
                    result="page",
                    requested=None,
                    family="either",
                    param=i,
                    field=fname,
                )
                ctx.acqs[acq.id] = acq
                out.append(Token(acq.id, HELD, frozenset({FULL})))
        return out

    def _page_array_fields(self, fn: Function, param: str, struct: str) -> list[str]:
        """Fields of a parameter's struct that hold page arrays: typed so in the struct
        (when its definition was read), or released as one in the body."""
        fields = {
            f
            for f, t in self.program.struct_fields.get(struct, {}).items()
            if t.struct == "page" and t.ptr == 2
        }
        for _n, call in fn.calls():
            spec = self.rel.release.get(self.program.canonical(call.callee or ""))
            if spec is None or call.indirect:
                continue
            index = spec.page if spec.page is not None else spec.pages
            if index is None or index >= len(call.args):
                continue
            arg = call.args[index]
            array = peel(_array_of(arg) if spec.page is not None else arg, AddrOf)
            if isinstance(array, Field) and array.arrow and array.base == Name(param):
                fields.add(array.name)
        return sorted(fields)

    # ---------------------------------------------------------------- transfer
    def _transfer(self, ctx: _Ctx, n: int, st: State) -> State:
        ins = ctx.fn.cfg.instrs[n]
        tokens = set(st.tokens)
        aliases = set(st.aliases)
        fresh: dict[Loc, int] = {}
        for idx, call in enumerate(ins.calls):
            acq = self._acquisition(ctx, n, idx, call, ins.lhs if ins.kind is Kind.ASSIGN else None)
            if acq is not None:
                # This call's pages, and the page of another call into the same variable
                # (a retry: `get_user_pages_fast(.., &page)` again), are out of sight.
                over = {
                    a.id for a in ctx.acqs.values() if a.single and acq.single and a.key == acq.key
                }
                tokens = {t for t in tokens if t.acq != acq.id and t.acq not in over}
                aliases = {a for a in aliases if a[1] != acq.id and a[1] not in over}
                at = frozenset({f"@{call.loc.line}:{call.loc.col}"})
                decided = ctx.decided.get(n, frozenset())
                tokens.add(Token(acq.id, HELD, self._initial_cases(acq), names=at, facts=decided))
                fresh[call.loc] = acq.id
            else:
                tokens = self._call(ctx, n, call, tokens, aliases)
        if ins.kind is Kind.ASSIGN and ins.lhs is not None and ins.rhs is not None:
            tokens = self._assign(ctx, ins.lhs, ins.rhs, tokens, aliases, fresh)
        elif ins.kind is Kind.RETURN and ins.rhs is not None:
            tokens = self._return(ctx, ins.rhs, tokens, aliases)
        return State(frozenset(tokens), frozenset(aliases))

    def _initial_cases(self, acq: Acquisition) -> frozenset[str]:
        if acq.result == "status":
            return frozenset({NEG, ZERO})
        if acq.result == "page":
            spec = self.rel.single.get(acq.source)
            returns = spec.returns if spec is not None else frozenset({"NULL", "ERR_PTR"})
            out = {FULL}
            if "NULL" in returns:
                out.add(ZERO)
            if "ERR_PTR" in returns:
                out.add(NEG)
            return frozenset(out)
        if acq.requested is not None and _is_one(acq.requested):
            return frozenset({NEG, ZERO, FULL})
        return ALL

    # ---------------------------------------------------------------- acquisitions
    def _acquisition(
        self, ctx: _Ctx, n: int, idx: int, call: Call, lhs: Expr | None
    ) -> Acquisition | None:
        aid = n * 64 + idx
        if aid in ctx.acqs:
            return ctx.acqs[aid]
        if aid in ctx.plain or call.indirect:
            return None
        name = self.program.canonical(call.callee or "")
        acq: Acquisition | None = None
        if name in self.gup.array:
            arg, via_pointer = pages_arg(self.program, ctx.fn, name, call)
            if arg is not None:
                acq = self._array_acq(ctx, n, aid, call, name, arg, via_pointer)
        elif name in self.rel.single:
            acq = self._single_acq(ctx, n, aid, call, name, lhs)
        else:
            acq = self._helper_acq(ctx, n, aid, call)
        if acq is not None:
            ctx.acqs[aid] = acq
        else:
            ctx.plain.add(aid)  # the solver visits nodes again: resolve the call once
        return acq

    def _array_acq(
        self,
        ctx: _Ctx,
        n: int,
        aid: int,
        call: Call,
        name: str,
        arg: Expr,
        via_pointer: bool,
        requested: Expr | None = None,
        family: str | None = None,
        result: str | None = None,
    ) -> Acquisition | None:
        params = self.program.prototypes.get(name, ())
        if requested is None and result is None:
            requested = self._arg_named(params, call, self.rel.count_params)
        if family is None:
            flags = self._arg_named(params, call, self.rel.flags_params)
            if name in self.rel.either:
                family = "either"
            elif name in self.rel.pin or (flags is not None and self.rel.pin_flag in _names(flags)):
                family = "pin"
            else:
                family = "get"
        if result is None:
            result = "bytes" if name in self.rel.bytes else "count"
        if result == "bytes":
            requested = None
        target = peel(arg, Deref)
        single = False
        offset = _offset(target)
        if via_pointer and isinstance(target, AddrOf):
            target = target.operand
        elif isinstance(target, AddrOf) and isinstance(peel(target.operand, AddrOf), Name):
            target, single = target.operand, True  # &page: one page
        else:
            target = _array_of(target) if isinstance(peel(target, Deref), AddrOf) else target
            if isinstance(target, Op) and target.op in ("+", "-") and target.operands:
                target = target.operands[0]  # pages + got: the same array
        target = peel(target, AddrOf)
        if isinstance(target, Name) and not single:
            inside = self._into_local_array(ctx.fn, target.id)
            if inside is not None:  # pages = pvec + pinned: pins go into pvec
                target, shifted = inside
                offset = offset or shifted
        root = _root(target)
        if root is None:
            return None
        local = (
            isinstance(target, Name)
            and root.id in ctx.fn.locals
            and not self._is_param(ctx.fn, root.id)
            and not self._borrowed_array(ctx.fn, root.id)
        )
        how = f"{call.callee}() takes {'a pin' if family == 'pin' else 'a reference'} on"
        what = (
            f"the page in {render(target)}"
            if single
            else f"each page it stores in {render(target)}"
        )
        return Acquisition(
            id=aid,
            node=n,
            loc=call.loc,
            source=call.callee or name,
            key=render(target),
            single=single,
            owner="local" if local else "caller",
            result=result,
            requested=requested,
            family=family,
            offset=offset,
            how=f"{how} {what}"
            + (f" ({render(requested)} asked for)" if requested is not None else ""),
        )

    def _single_acq(
        self, ctx: _Ctx, n: int, aid: int, call: Call, name: str, lhs: Expr | None
    ) -> Acquisition | None:
        spec = self.rel.single[name]
        if spec.when_flag is not None and not any(spec.when_flag in _names(a) for a in call.args):
            return None
        if not isinstance(lhs, Name) or lhs.id not in ctx.fn.locals:
            return None
        return Acquisition(
            id=aid,
            node=n,
            loc=call.loc,
            source=call.callee or name,
            key=lhs.id,
            single=True,
            owner="local",
            result="page",
            requested=None,
            family="get",
            how=f"{call.callee}() returns a referenced page into {lhs.id}",
        )

    def _helper_acq(self, ctx: _Ctx, n: int, aid: int, call: Call) -> Acquisition | None:
        for target in self.program.resolve(ctx.fn, call):
            if not self._handles_pages(target):
                continue
            summary = self.summary(target, ctx.depth + 1)
            acq = summary.acquire
            if acq is None or acq.param >= len(call.args):
                continue
            if summary.params.get(acq.param, ParamEffect("borrow")).kind == "keep":
                continue  # it passes the pages on itself (as PFNs, into a struct)
            requested = (
                call.args[acq.requested]
                if acq.requested is not None and acq.requested < len(call.args)
                else None
            )
            found = self._array_acq(
                ctx,
                n,
                aid,
                call,
                target.name,
                call.args[acq.param],
                False,
                requested=requested,
                family=acq.family,
                result=acq.result,
            )
            if found is not None:
                verb = "pins" if acq.family == "pin" else "takes references on"
                found = replace(
                    found,
                    how=f"{target.name}() {verb} the pages it stores in {found.key}"
                    f" (through {acq.source}())"
                    + (
                        ": 0 when all are held, an errno with none"
                        if acq.result == "status"
                        else ""
                    ),
                )
            return found
        return None

    def _arg_named(
        self, params: Sequence[Param], call: Call, names: tuple[str, ...]
    ) -> Expr | None:
        for i, p in enumerate(params):
            if p.name in names and i < len(call.args):
                return call.args[i]
        return None

    @staticmethod
    def _into_local_array(fn: Function, name: str) -> tuple[Name, bool] | None:
        """The local array a local pointer points into, when every assignment to it is
        `array`, `array + n` or `&array[n]`; and whether it may point past element 0."""
        found: Name | None = None
        shifted = False
        for ins in fn.cfg.instrs:
            if ins.kind is not Kind.ASSIGN or ins.lhs != Name(name) or ins.rhs is None:
                continue
            src = peel(ins.rhs, AddrOf)
            if isinstance(src, Name) and src.id == name:
                continue
            base = _array_of(ins.rhs) if isinstance(src, Index) else src
            if isinstance(base, Op) and base.op in ("+", "-") and base.operands:
                base, shifted = peel(base.operands[0], AddrOf), True
            elif isinstance(src, Index):
                shifted = shifted or not _is_zero(src.index)
            if not isinstance(base, Name) or base.id == name or base.id not in fn.locals:
                return None
            if _param_index(fn, base.id) is not None or found not in (None, base):
                return None
            found = base
        return (found, shifted) if found is not None else None

    @staticmethod
    def _borrowed_array(fn: Function, name: str) -> bool:
        """A local pointer set to point into someone else's array (`pages = dio->pages`,
        `p = &ap->pages[n]`, a parameter's memory): the pages belong to that array's owner."""
        for ins in fn.cfg.instrs:
            if ins.kind is not Kind.ASSIGN or ins.lhs != Name(name) or ins.rhs is None:
                continue
            src = peel(ins.rhs, AddrOf)
            if isinstance(src, Op) and src.op in ("+", "-") and src.operands:
                src = peel(src.operands[0], AddrOf)
            if isinstance(src, (Field, Index)):
                return True
            if (
                isinstance(src, Name)
                and src.id != name
                and (src.id not in fn.locals or _param_index(fn, src.id) is not None)
            ):
                return True
        return False

    @staticmethod
    def _is_param(fn: Function, name: str) -> bool:
        return _param_index(fn, name) is not None

    @staticmethod
    def _handles_pages(fn: Function) -> bool:
        return any(p.type.struct == "page" and p.type.ptr >= 1 for p in fn.params)

    # ---------------------------------------------------------------- what an expression holds
    def _holds(self, ctx: _Ctx, e: Expr, aliases: Aliases) -> list[tuple[int, str]]:
        """The acquisitions whose pages `e` is, or holds: (id, array | element | page)."""
        bare = peel(e, AddrOf)
        text = render(bare)
        array = _array_of(e)
        text = ctx.points.get(text, text)
        array_text = render(array)
        array_text = ctx.points.get(array_text, array_text)
        out = []
        for aid, acq in ctx.acqs.items():
            if acq.single:
                if text == acq.key or (f"*{text}", aid) in aliases:
                    out.append((aid, "page"))
            elif text == acq.key:
                out.append((aid, "array"))
            elif (array is not bare and array_text == acq.key) or (f"*{text}", aid) in aliases:
                out.append((aid, "element"))
        return out

    def _released(self, ctx: _Ctx, e: Expr, aliases: Aliases) -> list[tuple[int, str]]:
        """What a release of `e` releases: what it holds, or the page whose folio it is
        (`folio_put(page_folio(page))`, or of a local set so: under the folio refcount
        model a page's reference is its folio's). A folio counts only here: handed to
        other calls it is not followed, as before folios were known."""
        e = self._page_of_folio(e)
        if isinstance(e, Name):
            folio = [
                (aid, "page" if ctx.acqs[aid].single else "element")
                for name, aid in aliases
                if name == f"~{e.id}"
            ]
            if folio:
                return folio
        return self._holds(ctx, e, aliases)

    def _page_of_folio(self, e: Expr) -> Expr:
        """The page `e` is the folio of (page_folio(page)), or `e` itself."""
        while isinstance(e, Call) and e.callee in self.rel.folio_of and e.args:
            e = e.args[0]
        return e

    def _mentions(self, ctx: _Ctx, e: Expr, aliases: Aliases) -> list[int]:
        """Acquisitions any part of `e` holds pages of (for stores, returns and calls)."""
        found: dict[int, None] = {}
        stack = [e]
        while stack:
            x = stack.pop()
            for aid, _how in self._holds(ctx, x, aliases):
                found[aid] = None
            match x:
                # `|`: a pointer with tag bits in its low bits (sg_assign_page()'s
                # `page_link | (unsigned long)page`) is still the page
                case Op(op=op, operands=ops) if op in ("cast", "?:", ",", "+", "-", "|", "{}"):
                    stack += list(ops)
                case AddrOf(operand=Field(base=b)):
                    stack.append(b)  # &page->lru: the page goes on a list
                case Call(callee=c, args=args) if c in self.rel.identities:
                    stack += list(args)  # page_to_pfn(page): the page, as a number
                case AddrOf(operand=o):
                    stack.append(o)
        return list(found)

    # ---------------------------------------------------------------- calls
    def _call(
        self,
        ctx: _Ctx,
        n: int,
        call: Call,
        tokens: set[Token],
        aliases: Aliases,
    ) -> set[Token]:
        name = self.program.canonical(call.callee or "")
        spec = self.rel.release.get(name) if not call.indirect else None
        if spec is None and not call.indirect:
            spec = self.rel.release.get(call.callee or "")
        if spec is not None:
            if spec.page is not None and spec.page < len(call.args):
                arg, bound = call.args[spec.page], None
            elif spec.pages is not None and spec.count is not None and spec.count < len(call.args):
                arg, bound = call.args[spec.pages], call.args[spec.count]
            else:
                return tokens
            unsigned = self._unsigned_count(name, spec.count)
            return self._release(
                ctx,
                n,
                call,
                name,
                spec.family,
                arg,
                bound,
                spec.page is None,
                unsigned,
                tokens,
                aliases,
            )
        if not call.indirect and name in self.api.refs.reference:
            again = {aid for a in call.args for aid in self._mentions(ctx, a, aliases)}
            return {replace(t, loose=True) if t.acq in again else t for t in tokens}
        tokens = self._field_releases(ctx, n, call, tokens, aliases)
        held = [(i, a, self._mentions(ctx, a, aliases)) for i, a in enumerate(call.args)]
        held = [(i, a, ids) for i, a, ids in held if ids]
        if not held:
            return tokens
        targets = self.program.resolve(ctx.fn, call)
        if not targets:
            if call.indirect or not self.rel.borrows(name):
                return self._hand_off(tokens, {a for _i, _a, ids in held for a in ids})
            return tokens
        effects = self.summary(targets[0], ctx.depth + 1).params
        for i, arg, ids in held:
            eff = effects.get(
                i,
                ParamEffect("keep")
                if self._keeps_unknown(targets[0], i)
                else ParamEffect("borrow"),
            )
            if eff.kind == "keep":
                tokens = self._hand_off(tokens, set(ids))
            elif eff.kind == "release":
                bound = (
                    call.args[eff.bound]
                    if eff.bound is not None and eff.bound < len(call.args)
                    else None
                )
                fn_params = targets[0].params
                bulk = i < len(fn_params) and fn_params[i].type.ptr >= 2
                unsigned = eff.bound is not None and _unsigned(
                    fn_params[eff.bound].type.text if eff.bound < len(fn_params) else ""
                )
                tokens = self._release(
                    ctx,
                    n,
                    call,
                    targets[0].name,
                    eff.family,
                    arg,
                    bound,
                    bulk,
                    unsigned,
                    tokens,
                    aliases,
                )
        return tokens

    def _field_releases(
        self, ctx: _Ctx, n: int, call: Call, tokens: set[Token], aliases: Aliases
    ) -> set[Token]:
        """A helper given a struct whose page array it releases: `free_user_pages(bo, n)`
        releases bo->pages[0..n)."""
        keys = {ctx.acqs[t.acq].key for t in tokens if t.status == HELD}
        bases = {
            i: peel(a, AddrOf)
            for i, a in enumerate(call.args)
            if any(
                k.startswith((f"{render(peel(a, AddrOf))}->", f"{render(peel(a, AddrOf))}."))
                for k in keys
            )
        }
        if not bases or call.indirect:
            return tokens
        for target in self.program.resolve(ctx.fn, call)[:1]:
            for (i, fname), eff in self.summary(target, ctx.depth + 1).fields.items():
                base = bases.get(i)
                if base is None or eff.kind != "release":
                    continue
                arrow = not isinstance(call.args[i], AddrOf)
                array = Field(base, fname, arrow)
                bound = (
                    call.args[eff.bound]
                    if eff.bound is not None and eff.bound < len(call.args)
                    else None
                )
                unsigned = (
                    eff.bound is not None
                    and eff.bound < len(target.params)
                    and _unsigned(target.params[eff.bound].type.text)
                )
                tokens = self._release(
                    ctx,
                    n,
                    call,
                    target.name,
                    eff.family,
                    array,
                    bound,
                    True,
                    unsigned,
                    tokens,
                    aliases,
                )
        return tokens

    @staticmethod
    def _keeps_unknown(fn: Function, i: int) -> bool:
        """A parameter the summary says nothing of: not a page, so whatever it receives
        (a struct holding pages, a void *) is out of sight from then on."""
        if i >= len(fn.params):
            return True  # variadic
        t = fn.params[i].type
        return not (t.struct == "page" and t.ptr in (1, 2))

    def _unsigned_count(self, name: str, index: int | None) -> bool:
        params = self.program.prototypes.get(name)
        if index is None or not params or index >= len(params):
            return False
        return _unsigned(params[index].type.text)

    def _hand_off(self, tokens: set[Token], ids: set[int]) -> set[Token]:
        return {
            replace(t, status=HANDED) if t.acq in ids and t.status == HELD else t for t in tokens
        }

    def _release(
        self,
        ctx: _Ctx,
        n: int,
        call: Call,
        name: str,
        family: str,
        arg: Expr,
        bound: Expr | None,
        bulk: bool,
        unsigned: bool,
        tokens: set[Token],
        aliases: Aliases,
    ) -> set[Token]:
        loop = ctx.loops.get(n)
        out = set(tokens)
        sub = bulk and _offset(arg)  # releases a later part of the array only
        for aid, how in self._released(ctx, arg, aliases):
            acq = ctx.acqs[aid]
            if sub and not acq.offset:
                continue
            in_loop = loop is not None and how == "element" and loop.key == acq.key
            if how == "array":
                b = bound
            elif how == "page":
                b = acq.requested  # one page: 1 for `&page`, none for a returned page
            else:
                b = loop.bound if in_loop and loop is not None else None
            for t in tokens:
                if t.acq != aid:
                    continue
                if t.status == HELD:
                    self._judge_release(ctx, n, call, name, family, acq, t, b, bulk, unsigned)
                    out.discard(t)
                    out.add(replace(t, status=RELEASED, rel=n, loose=in_loop or t.loose))
                elif (
                    t.status == RELEASED
                    and t.rel != n
                    and not t.loose
                    and not in_loop
                    and acq.owner != "seed"
                    and not acq.offset
                    and how != "element"
                    and ctx.events is not None
                ):
                    ctx.events.append(
                        self._event(
                            ctx,
                            "over-release",
                            "twice",
                            acq,
                            n,
                            call,
                            name,
                            t.cases,
                            family,
                            other=t.rel,
                        )
                    )
            if acq.owner == "seed" and ctx.events is not None:
                bound_param = _param_index(ctx.fn, b.id) if isinstance(b, Name) else None
                slot = (acq.param, acq.field)
                seen = ctx.seed_releases.get(slot)
                # One path puts, another unpins: the caller's flags decide.
                kind = "any" if seen is not None and seen.family != family else family
                ctx.seed_releases[slot] = ParamEffect("release", kind, bound_param)
        return out

    def _judge_release(
        self,
        ctx: _Ctx,
        n: int,
        call: Call,
        name: str,
        family: str,
        acq: Acquisition,
        t: Token,
        bound: Expr | None,
        bulk: bool,
        unsigned: bool,
    ) -> None:
        if ctx.events is None or acq.owner == "seed":
            return
        held = t.cases & _HOLDS[acq.result]
        if held and (acq.family, family) in (("pin", "put"), ("get", "unpin")):
            ctx.events.append(
                self._event(ctx, "mismatch", family, acq, n, call, name, t.cases, family)
            )
        if bound is None or acq.offset:
            return
        counted = _counts(bound, t.names)
        short = _SHORT.get(acq.result, NONE) & t.cases
        asked = acq.requested is not None and _NEW_REQUEST not in t.names
        if not counted and asked and short and _same(bound, acq.requested):  # type: ignore[arg-type]
            ctx.events.append(
                self._event(ctx, "over-release", "requested", acq, n, call, name, short, family)
            )
        elif counted and bulk and unsigned and NEG in t.cases:
            ctx.events.append(
                self._event(
                    ctx, "over-release", "negative", acq, n, call, name, frozenset({NEG}), family
                )
            )

    def _event(
        self,
        ctx: _Ctx,
        kind: str,
        detail: str,
        acq: Acquisition,
        n: int,
        call: Call | None,
        name: str | None,
        cases: frozenset[str],
        family: str = "",
        other: int | None = None,
        loc: Loc | None = None,
    ) -> Event:
        step: tuple[TraceStep, ...] = ()
        if other is not None:
            first = ctx.fn.cfg.instrs[other].loc
            step = (
                TraceStep(
                    Location(ctx.fn.path, first.line, first.col),
                    ctx.fn.name,
                    "the pages are released here first",
                ),
            )
        return Event(
            kind=kind,
            detail=detail,
            function=ctx.fn,
            acquisition=acq,
            node=n,
            loc=call.loc if call is not None else (loc or ctx.fn.cfg.instrs[n].loc),
            release=name,
            cases=cases,
            trace=step,
            release_family=family,
        )

    # ---------------------------------------------------------------- stores and returns
    def _assign(
        self,
        ctx: _Ctx,
        lhs: Expr,
        rhs: Expr,
        tokens: set[Token],
        aliases: set[tuple[str, int]],
        fresh: dict[Loc, int],
    ) -> set[Token]:
        local = isinstance(lhs, Name) and lhs.id in ctx.fn.locals
        held = self._mentions(ctx, rhs, aliases)
        pr = peel(rhs, AddrOf)
        new = fresh.get(pr.loc) if isinstance(pr, Call) else None
        held = [h for h in held if h != new]
        if isinstance(lhs, Name) and local:
            name = lhs.id
            aliases -= {a for a in aliases if a[0] in (f"*{name}", f"~{name}")}
            page = self._page_of_folio(pr)
            if page is not pr:
                aliases |= {
                    (f"~{name}", aid)
                    for aid, how in self._holds(ctx, page, aliases)
                    if how in ("element", "page")
                }
            # The variable now names another page: what it held before is out of sight.
            gone = {
                a.id
                for a in ctx.acqs.values()
                if a.single and a.key == name and a.result == "page" and a.id != new
            }
            tokens = {
                replace(t, names=t.names | {name})
                if _counts(rhs, t.names) and ctx.acqs[t.acq].result != "page"
                else replace(t, names=t.names - {name})
                if name in t.names
                else t
                for t in tokens
                if t.acq not in gone
            }
            # The variable that held the requested count now holds something else.
            tokens = {
                replace(t, names=t.names | {_NEW_REQUEST})
                if t.acq != new and ctx.acqs[t.acq].requested == Name(name)
                else t
                for t in tokens
            }
            moved = []
            for aid, how in self._holds(ctx, rhs, aliases):
                if how in ("element", "page"):
                    aliases.add((f"*{name}", aid))
                else:
                    moved.append(aid)  # q = pages: the array goes out of sight
            if isinstance(pr, Op) and pr.op == "{}":  # bv = { .bv_page = pages[i] }
                aliases |= {(f"*{name}", aid) for aid in held}
                held = []
            # ... as it does when re-pointed: `pages += n`. A page's address or PFN kept in
            # a local (`p = page_address(page)`) is still this function's business.
            held = [h for h in held if h in moved or (h != new and ctx.acqs[h].key == name)]
            neg = _negative_const(rhs)
            tokens = {
                replace(t, negs=t.negs | {name} if neg else t.negs - {name})
                if neg or name in t.negs
                else t
                for t in tokens
            }
        else:
            # The count kept where a caller can see it: the caller releases the pages.
            used = set(_names(rhs))
            held += [t.acq for t in tokens if ctx.acqs[t.acq].owner == "caller" and used & t.names]
        return self._hand_off(tokens, set(held))

    def _return(
        self, ctx: _Ctx, rhs: Expr, tokens: set[Token], aliases: set[tuple[str, int]]
    ) -> set[Token]:
        """Returning the pages hands them to the caller; so does returning the count of
        pages in a caller's array, unless on this path the value returned is an errno."""
        tokens = self._hand_off(tokens, set(self._mentions(ctx, rhs, aliases)))
        return {
            replace(t, status=HANDED)
            if t.status == HELD
            and ctx.acqs[t.acq].owner == "caller"
            and _counts(rhs, t.names)
            and not self._negative(rhs, t)
            else t
            for t in tokens
        }

    # ---------------------------------------------------------------- branches
    def _edge(self, ctx: _Ctx, p: int, pol: bool | None, st: State) -> State:
        if pol is None:
            return st
        ins = ctx.fn.cfg.instrs[p]
        tokens = st.tokens
        fact = ctx.invariant.get(p)
        if fact is not None and tokens:
            went = pol == _polarity(ins.rhs)
            tokens = frozenset(
                replace(t, facts=t.facts | {(fact, went)})
                for t in tokens
                if (fact, not went) not in t.facts  # the other way on this path: infeasible
            )
        if ins.kind is Kind.BRANCH and ins.rhs is not None and tokens:
            out = set()
            for t in tokens:
                acq = ctx.acqs[t.acq]
                if acq.owner == "seed":
                    out.add(t)
                    continue
                true, false = self._cond(ins.rhs, acq, t.names, st.aliases)
                cases = t.cases & (true if pol else false)
                if cases:
                    out.add(replace(t, cases=cases) if cases != t.cases else t)
            tokens = frozenset(out)
        for loop in ctx.exits.get((p, pol), ()):
            tokens = frozenset(
                replace(t, status=loop.status, rel=loop.node, loose=True)
                if t.status == HELD and ctx.acqs[t.acq].key == loop.key
                else t
                for t in tokens
            )
        return State(tokens, st.aliases) if tokens is not st.tokens else st

    def _cond(
        self, e: Expr, acq: Acquisition, names: AbstractSet[str], copies: Aliases
    ) -> tuple[frozenset[str], frozenset[str]]:
        """The cases possible when `e` is true, and when it is false."""
        e = peel(e, AddrOf)
        match e:
            case Op(op="!", operands=(x,)):
                t, f = self._cond(x, acq, names, copies)
                return f, t
            case Op(op="&&", operands=(a, b)):
                ta, fa = self._cond(a, acq, names, copies)
                tb, fb = self._cond(b, acq, names, copies)
                return ta & tb, fa | fb
            case Op(op="||", operands=(a, b)):
                ta, fa = self._cond(a, acq, names, copies)
                tb, fb = self._cond(b, acq, names, copies)
                return ta | tb, fa & fb
            case Op(op="==" | "!=", operands=(a, b)) if _is_zero(b) and self._is_store(a, acq):
                return (_NOTHING, ALL) if e.op == "==" else (ALL, _NOTHING)
            case Op(op=op, operands=(a, b)) if op in _VS_ZERO:
                if self._is_result(b, acq, names, copies) and not self._is_result(
                    a, acq, names, copies
                ):
                    a, b, op = b, a, _MIRROR[op]
                if not self._is_result(a, acq, names, copies):
                    return ALL, ALL
                if _is_zero(b):
                    table = _VS_ZERO[op]
                elif acq.requested is not None and _same(b, acq.requested):
                    table = _VS_REQUESTED[op]
                elif isinstance(b, Const) and b.text == "1" and op in ("<", ">="):
                    table = _VS_ZERO["<=" if op == "<" else ">"]  # ret < 1: ret <= 0
                elif _negative_const(b) and op in ("==", "!="):
                    table = frozenset({NEG}) if op == "==" else ALL
                    return (table, ALL) if op == "==" else (ALL, frozenset({NEG}))
                else:
                    return ALL, ALL
                return table, ALL - table
            case Call(callee=c, args=(x,)) if c in self.rel.transparent:
                return self._cond(x, acq, names, copies)
            case Call(callee=c, args=(x,)) if c in self.rel.is_err and self._is_result(
                x, acq, names, copies
            ):
                return frozenset({NEG}), ALL - {NEG}
            case Call(callee=c, args=(x,)) if c in self.rel.is_err_or_null and self._is_result(
                x, acq, names, copies
            ):
                return frozenset({NEG, ZERO}), ALL - {NEG, ZERO}
        if self._is_result(e, acq, names, copies):
            return ALL - {ZERO}, frozenset({ZERO})
        if self._is_store(e, acq):
            return ALL, _NOTHING
        return ALL, ALL

    @staticmethod
    def _is_store(e: Expr, acq: Acquisition) -> bool:
        """Whether `e` is where a GUP array call stored its pages (the array, or the page
        variable of `&page`): when that is NULL, no page can be held in it."""
        return acq.result != "page" and isinstance(e, Name | Field) and render(e) == acq.key

    @staticmethod
    def _is_result(e: Expr, acq: Acquisition, names: AbstractSet[str], copies: Aliases) -> bool:
        e = peel(e, AddrOf)
        if acq.result == "page":
            return isinstance(e, Name) and (e.id == acq.key or (f"*{e.id}", acq.id) in copies)
        return _counts(e, names)

    # ---------------------------------------------------------------- loops
    def _find_loops(self, ctx: _Ctx) -> None:
        """Loops that release an array's elements: the release inside, the branch that
        ends the loop and the bound it compares the index with."""
        fn = ctx.fn
        cfg = fn.cfg
        candidates = list(self._loop_candidates(ctx))
        if not candidates:
            return
        scc = _sccs(cfg)
        rank = {m: i for i, m in enumerate(cfg.reverse_postorder())}
        for n, arg, status in candidates:
            comp = scc.get(n)
            if comp is None:
                continue
            found = self._element_index(fn, arg, comp)
            if found is None:
                continue
            key, index = found
            key = ctx.points.get(key, key)
            if index is None:
                inner = _innermost_loop(cfg, n, comp, rank)
                if inner is None:
                    continue
                header, body = inner
            else:
                head = self._loop_header(cfg, n, index, comp)
                if head is None:
                    continue
                header, body = head, _natural_loop(cfg, head, rank)
            if n not in body:
                continue
            exits = [pol for m, pol in cfg.succs[header] if m not in body and pol is not None]
            if len(exits) != 1:
                continue
            bound = self._bound(cfg, header, index, comp) if index is not None else None
            loop = LoopRelease(n, header, exits[0], key, bound, status)
            if status == RELEASED:
                ctx.loops[n] = loop
            ctx.exits.setdefault((header, exits[0]), []).append(loop)

    def _loop_candidates(self, ctx: _Ctx) -> Iterator[tuple[int, Expr, str]]:
        """Releases of one page, and hand-offs of an array element (stored away, or
        passed to a call that keeps it), with their page expressions."""
        for n, ins in enumerate(ctx.fn.cfg.instrs):
            for call in ins.calls:
                arg = self._single_release_arg(ctx, call)
                if arg is not None:
                    yield n, arg, RELEASED
                    continue
                name = self.program.canonical(call.callee or "")
                if not call.indirect and (name in self.rel.release or name in self.gup.array):
                    continue
                targets = self.program.resolve(ctx.fn, call)
                for i, a in enumerate(call.args):
                    if not isinstance(peel(a, AddrOf), (Index, Deref)):
                        continue
                    if targets:
                        eff = self.summary(targets[0], ctx.depth + 1).params.get(i)
                        keeps = eff.kind == "keep" if eff else self._keeps_unknown(targets[0], i)
                    else:
                        keeps = call.indirect or not self.rel.borrows(name)
                    if keeps:
                        yield n, a, HANDED
            if ins.kind is Kind.ASSIGN and ins.rhs is not None and ins.lhs is not None:
                stored = not (isinstance(ins.lhs, Name) and ins.lhs.id in ctx.fn.locals)
                value = peel(ins.rhs, AddrOf)
                while (
                    isinstance(value, Call) and value.callee in self.rel.identities and value.args
                ):
                    value = peel(value.args[0], AddrOf)  # page_to_pfn(pages[i])
                if stored and isinstance(value, (Index, Deref)):
                    yield n, value, HANDED

    def _single_release_arg(self, ctx: _Ctx, call: Call) -> Expr | None:
        """The page a call releases: a one-page primitive's argument, or the page
        parameter a helper's summary says it releases."""
        if call.indirect:
            return None
        name = self.program.canonical(call.callee or "")
        spec = self.rel.release.get(name) or self.rel.release.get(call.callee or "")
        if spec is not None:
            ok = spec.page is not None and spec.page < len(call.args)
            return call.args[spec.page] if ok and spec.page is not None else None
        for target in self.program.resolve(ctx.fn, call)[:1]:
            if not self._handles_pages(target):
                continue
            for i, eff in self.summary(target, ctx.depth + 1).params.items():
                one = target.params[i].type.ptr == 1
                if eff.kind == "release" and one and i < len(call.args):
                    return call.args[i]
        return None

    @staticmethod
    def _element_index(
        fn: Function, arg: Expr, comp: frozenset[int]
    ) -> tuple[str, str | None] | None:
        """The array an element expression walks and its index variable: `pages[i]`
        (also through `page = pages[i]`), or `*pages++` (a moving pointer: no index)."""
        arg = peel(arg, AddrOf)
        if isinstance(arg, Deref):
            moved = peel(arg.operand, AddrOf)
            if isinstance(moved, Op) and moved.op in ("post++", "pre++") and moved.operands:
                base = peel(moved.operands[0], AddrOf)
                return (render(base), None) if isinstance(base, Name) else None
        if isinstance(arg, Name):  # page = pages[i]; ... put_page(page);
            for m in sorted(comp):
                ins = fn.cfg.instrs[m]
                if ins.kind is Kind.ASSIGN and ins.lhs == arg and ins.rhs is not None:
                    arg = peel(ins.rhs, AddrOf)
                    break
        if not isinstance(arg, Index):
            return None
        index = peel(arg.index, AddrOf)
        if isinstance(index, Op) and index.op in _MOVES and len(index.operands) == 1:
            index = peel(index.operands[0], AddrOf)  # pages[i++]
        if isinstance(index, Name):
            return render(peel(arg.base, AddrOf)), index.id
        return None

    @staticmethod
    def _loop_header(cfg: CFG, n: int, index: str, comp: frozenset[int]) -> int | None:
        seen = {n}
        queue = deque([n])
        while queue:
            m = queue.popleft()
            ins = cfg.instrs[m]
            if ins.kind is Kind.BRANCH and index in set(_names(ins.rhs)):
                return m
            for p, _pol in cfg.preds(m):
                if p in comp and p not in seen:
                    seen.add(p)
                    queue.append(p)
        return None

    @staticmethod
    def _bound(cfg: CFG, header: int, index: str, comp: frozenset[int]) -> Expr | None:
        cond = peel(cfg.instrs[header].rhs or Const("1"), AddrOf)
        i = Name(index)
        match cond:
            case Op(op="<" | "!=", operands=(a, b)) if a == i:
                return b
            case Op(op=">", operands=(b, a)) if a == i:
                return b
            case Op(op="<=", operands=(a, b)) if a == i:
                return Op("+", (b, Const("1")))
        # A loop counting down: the bound is where the index starts.
        seen = {header}
        queue = deque([header])
        while queue:
            m = queue.popleft()
            ins = cfg.instrs[m]
            if m not in comp and ins.kind is Kind.ASSIGN and ins.lhs == i and ins.rhs is not None:
                start = peel(ins.rhs, AddrOf)
                if (
                    isinstance(start, Op)
                    and start.op == "-"
                    and start.operands[1:] == (Const("1"),)
                ):
                    return start.operands[0]
                return start
            for p, _pol in cfg.preds(m):
                if p not in seen:
                    seen.add(p)
                    queue.append(p)
        return i

    # ---------------------------------------------------------------- invariant conditions
    def _find_invariants(self, ctx: _Ctx) -> None:
        """Branches on values the function never changes (`flags & PIN` with `flags` a
        parameter never assigned), and for each such condition the nodes every path to
        which has decided it one way."""
        fn = ctx.fn
        cfg = fn.cfg
        written = {
            ins.lhs.id
            for ins in cfg.instrs
            if ins.kind is Kind.ASSIGN and isinstance(ins.lhs, Name)
        }
        written |= {  # &x passed anywhere: x may change behind our back
            e.operand.id
            for ins in cfg.instrs
            for e in subexpressions(ins.rhs, ins.lhs, *ins.calls)
            if isinstance(e, AddrOf) and isinstance(e.operand, Name)
        }
        params = {p.name for p in fn.params if p.name}
        by_cond: dict[str, list[int]] = {}
        for n, ins in enumerate(cfg.instrs):
            if ins.kind is not Kind.BRANCH or ins.rhs is None:
                continue
            cond = _bare(ins.rhs)
            if not _pure(cond):
                continue
            names = set(_names(cond))
            if not names or not all(
                (x in params and x not in written) or _CONSTANT.fullmatch(x) for x in names
            ):
                continue
            if not names & params:
                continue
            ctx.invariant[n] = render(cond)
            by_cond.setdefault(render(cond), []).append(n)
        for text, nodes in by_cond.items():
            for went in (True, False):
                # Cut the edges where the condition comes out `went`: what is then
                # unreachable lies behind such an edge on every path.
                cut = {(b, went == _polarity(cfg.instrs[b].rhs)) for b in nodes}
                for m in _unreached(cfg, cut):
                    ctx.decided[m] = ctx.decided.get(m, frozenset()) | {(text, went)}

    # ---------------------------------------------------------------- exits
    def _exits(self, ctx: _Ctx, outs: dict[int, State]) -> Summary:
        """Leaks at the function's exits, and its summary."""
        fn = ctx.fn
        cfg = fn.cfg
        returns_count: dict[int, bool] = {}
        returns_zero_held: dict[int, bool] = {}
        for p, pol in cfg.preds(CFG.EXIT):
            if p not in outs:
                continue
            ins = cfg.instrs[p]
            st = self._edge(ctx, p, pol, outs[p])
            rhs = ins.rhs if ins.kind is Kind.RETURN else None
            loc = ins.loc if ins.kind is Kind.RETURN else cfg.instrs[CFG.EXIT].loc
            for t in st.tokens:
                acq = ctx.acqs[t.acq]
                if acq.owner == "seed":
                    if t.status == HANDED and not acq.field:
                        ctx.seed_kept.add(acq.param)
                    continue
                # Returning the count hands the pages over: they were held up to here.
                holding = t.status != RELEASED and bool(t.cases & _HOLDS[acq.result])
                if rhs is not None and holding and _counts(rhs, t.names):
                    returns_count[acq.id] = True
                if rhs is not None and _is_zero(rhs) and t.status == HELD and ZERO not in t.cases:
                    returns_zero_held[acq.id] = True
                if t.status != HELD or not (t.cases & _HOLDS[acq.result]):
                    continue
                if acq.owner == "caller" and (rhs is None or not self._negative(rhs, t)):
                    continue
                if ctx.events is not None:
                    what = render(rhs) if rhs is not None else "end of function"
                    ctx.events.append(
                        self._event(
                            ctx,
                            "leak",
                            what,
                            acq,
                            p,
                            None,
                            None,
                            t.cases & _HOLDS[acq.result],
                            loc=loc,
                        )
                    )
        params: dict[int, ParamEffect] = {}
        for i, param in enumerate(fn.params):
            if param.type.struct != "page" or param.type.ptr not in (1, 2):
                continue
            if i in ctx.seed_kept:
                params[i] = ParamEffect("keep")
            elif (i, "") in ctx.seed_releases:
                params[i] = ctx.seed_releases[(i, "")]
            else:
                params[i] = ParamEffect("borrow")
        acquire = None
        for aid in sorted(ctx.acqs):
            acq = ctx.acqs[aid]
            if acq.owner != "caller" or acq.single or acq.result not in ("count", "status"):
                continue
            filled = _param_index(fn, acq.key)
            if filled is None:
                continue
            req = None
            if isinstance(acq.requested, Name):
                req = _param_index(fn, acq.requested.id)
            if returns_count.get(aid):
                result = acq.result
            elif returns_zero_held.get(aid):
                result = "status"
            else:
                continue
            acquire = AcquireSummary(filled, req, acq.family, result, acq.source)
            break
        fields = {k: v for k, v in ctx.seed_releases.items() if k[1]}
        return Summary(params, acquire, fields)

    def _negative(self, e: Expr, t: Token) -> bool:
        """Whether a returned value is an errno on this token's path."""
        e = peel(e, AddrOf)
        if _negative_const(e):
            return True
        if isinstance(e, Name):
            return e.id in t.negs
        if isinstance(e, Call) and e.callee == "PTR_ERR":
            return True
        if isinstance(e, Op) and e.op == "?:" and len(e.operands) == 3:
            arms = e.operands[1:]
            return any(_negative_const(a) for a in arms) and all(
                _negative_const(a) or _counts(a, t.names) or self._negative(a, t) for a in arms
            )
        return False

    # ---------------------------------------------------------------- traces
    def _trace(self, ctx: _Ctx, ins: dict[int, State], ev: Event) -> tuple[TraceStep, ...]:
        fn = ctx.fn
        cfg = fn.cfg
        acq = ev.acquisition

        def step(loc: Loc, note: str) -> TraceStep:
            return TraceStep(Location(fn.path, loc.line, loc.col), fn.name, note)

        steps = [step(acq.loc, acq.how)]

        # The shortest path from the acquisition to the event through nodes where the
        # acquisition is in the state the event speaks of.
        def alive(t: Token) -> bool:
            if t.acq != acq.id or not t.cases & ev.cases:
                return False
            return t.status == HELD if ev.kind == "leak" else True

        parent: dict[int, tuple[int, bool | None]] = {}
        seen = {acq.node}
        queue = deque([acq.node])
        while queue and ev.node not in seen:
            m = queue.popleft()
            for s, pol in cfg.succs[m]:
                if s in seen or s not in ins or not any(alive(t) for t in ins[s].tokens):
                    continue
                seen.add(s)
                parent[s] = (m, pol)
                queue.append(s)
        path: list[tuple[int, bool | None]] = []
        m = ev.node
        while m in parent:
            p, pol = parent[m]
            path.append((p, pol))
            m = p
        copies = frozenset().union(*(ins[n].aliases for n in ins)) if ins else frozenset()
        names = frozenset().union(*(t.names for n in ins for t in ins[n].tokens if t.acq == acq.id))
        cases = self._initial_cases(acq) if acq.owner != "seed" else ALL
        for p, pol in reversed(path):
            b = cfg.instrs[p]
            if b.kind is not Kind.BRANCH or pol is None or b.rhs is None:
                continue
            true, false = self._cond(b.rhs, acq, names, copies)
            narrowed = cases & (true if pol else false)
            if (true, false) != (ALL, ALL) and narrowed:
                cases = narrowed
                said = "true" if pol else "false"
                steps.append(step(b.loc, f"`{render(b.rhs)}` is {said}: {_words(acq, cases)}"))
        steps.extend(ev.trace)
        steps.append(step(ev.loc, _event_note(ev)))
        return tuple(steps)


def _words(acq: Acquisition, cases: frozenset[str]) -> str:
    """What a set of cases means, in words."""
    if acq.result == "page":
        names = {NEG: "an ERR_PTR", ZERO: "NULL", FULL: "a referenced page"}
    elif acq.result == "status":
        names = {NEG: "an errno (no page held)", ZERO: "0 (every page held)"}
    elif acq.result == "bytes":
        names = {NEG: "an errno (no page held)", ZERO: "0 bytes", PART: "a byte count above 0"}
        cases = cases - {FULL} | ({PART} if FULL in cases else set())
    else:
        names = {
            NEG: "an errno (no page held)",
            ZERO: "0 (nothing asked for)",
            PART: "fewer pages than asked for",
            FULL: "every page asked for",
        }
    shown = cases - {ZERO} if acq.result in ("count", "bytes") and cases - {ZERO} else cases
    parts = [names[c] for c in (NEG, ZERO, PART, FULL) if c in shown and c in names]
    return f"{acq.source}() returned " + (" or ".join(parts) if parts else "nothing possible")


def _trace_rank(ev: Event) -> tuple[int, list[tuple[int, int, str]]]:
    return len(ev.trace), [(s.location.line, s.location.column, s.note) for s in ev.trace]


def _event_note(ev: Event) -> str:
    acq = ev.acquisition
    if ev.kind == "leak":
        held = "the page" if acq.single else f"the pages in {acq.key}"
        if ev.detail == "end of function":
            return f"{ev.function.name}() ends with {held} still held: {_words(acq, ev.cases)}"
        return f"returns {ev.detail} with {held} still held: {_words(acq, ev.cases)}"
    if ev.kind == "mismatch":
        took = "pinned" if acq.family == "pin" else "referenced"
        drop = "unpins" if ev.release_family == "unpin" else "drops references on"
        return f"{ev.release}() {drop} pages {acq.source}() {took}"
    if ev.detail == "requested":
        return (
            f"{ev.release}() releases as many pages as were asked for, but here"
            f" {_words(acq, ev.cases)}"
        )
    if ev.detail == "negative":
        return f"{ev.release}() takes an unsigned count; here it is {acq.source}()'s errno"
    return f"{ev.release}() releases the same pages again"


_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")


def _bare(e: Expr) -> Expr:
    """A condition without its `!`s and casts (`!(flags & X)` -> `flags & X`)."""
    e = peel(e, AddrOf)
    while isinstance(e, Op) and e.op == "!" and len(e.operands) == 1:
        e = peel(e.operands[0], AddrOf)
    return e


def _polarity(e: Expr | None) -> bool:
    """Which branch edge means the bare condition is true: `!x` flips it."""
    flip = False
    x = peel(e, AddrOf) if e is not None else None
    while isinstance(x, Op) and x.op == "!" and len(x.operands) == 1:
        flip = not flip
        x = peel(x.operands[0], AddrOf)
    return not flip


def _pure(e: Expr) -> bool:
    """No calls, no memory reads: a condition on values alone."""
    return all(not isinstance(x, Call | Field | Index | Deref) for x in subexpressions(e))


def _unreached(cfg: CFG, cut: set[tuple[int, bool]]) -> set[int]:
    """Nodes no path from the entry reaches without crossing one of the `cut` edges."""
    seen = {CFG.ENTRY}
    stack = [CFG.ENTRY]
    while stack:
        m = stack.pop()
        for s, pol in cfg.succs[m]:
            if s not in seen and (pol is None or (m, pol) not in cut):
                seen.add(s)
                stack.append(s)
    return set(range(len(cfg.instrs))) - seen


def _param_index(fn: Function, name: str) -> int | None:
    return next((i for i, p in enumerate(fn.params) if p.name == name), None)


def _counts(e: Expr, names: AbstractSet[str]) -> bool:
    """Whether `e` is (a copy of) the result a token's names hold."""
    e = peel(e, AddrOf)
    if isinstance(e, Name):
        return e.id in names
    if isinstance(e, Call) and not e.indirect:
        return f"@{e.loc.line}:{e.loc.col}" in names
    return False


def _is_one(e: Expr) -> bool:
    return isinstance(e, Const) and e.text == "1"


def _same(a: Expr, b: Expr) -> bool:
    return render(peel(a, AddrOf)) == render(peel(b, AddrOf))


def _unsigned(type_text: str) -> bool:
    return "unsigned" in type_text or "size_t" in type_text


def _join(states: Sequence[State]) -> State:
    merged: dict[tuple[Any, ...], frozenset[str]] = {}
    aliases: set[tuple[str, int]] = set()
    for s in states:
        aliases |= s.aliases
        for t in s.tokens:
            k = (t.acq, t.status, t.rel, t.loose, t.negs, t.names, t.facts)
            merged[k] = merged.get(k, NONE) | t.cases
    tokens = frozenset(
        Token(acq, status, cases, rel, loose, negs, names, facts)
        for (acq, status, rel, loose, negs, names, facts), cases in merged.items()
    )
    return State(tokens, frozenset(aliases))


def _sccs(cfg: CFG) -> dict[int, frozenset[int]]:
    """Nodes that lie on a cycle, mapped to their strongly connected component."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on: set[int] = set()
    stack: list[int] = []
    out: dict[int, frozenset[int]] = {}
    counter = 0
    for root in range(len(cfg.instrs)):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on.add(v)
            succs = cfg.succs[v]
            if i < len(succs):
                work[-1] = (v, i + 1)
                w = succs[i][0]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                cyclic = len(comp) > 1 or any(s == v for s, _ in cfg.succs[v])
                if cyclic:
                    fs = frozenset(comp)
                    for w in comp:
                        out[w] = fs
    return out


def _natural_loop(cfg: CFG, header: int, rank: dict[int, int]) -> set[int]:
    """The body of the loop `header` heads: the nodes that reach one of its back edges
    (edges into it from later in reverse postorder) without passing through it."""
    body = {header}
    stack = [p for p, _ in cfg.preds(header) if p in rank and rank[p] >= rank[header]]
    while stack:
        m = stack.pop()
        if m in body:
            continue
        body.add(m)
        stack.extend(p for p, _ in cfg.preds(m) if p in rank)
    return body


def _innermost_loop(
    cfg: CFG, n: int, comp: frozenset[int], rank: dict[int, int]
) -> tuple[int, set[int]] | None:
    """The innermost loop around `n` that a branch heads, with its body."""
    best: tuple[int, set[int]] | None = None
    for h in sorted(comp):
        if cfg.instrs[h].kind is not Kind.BRANCH:
            continue
        if not any(p in rank and rank[p] >= rank.get(h, 0) for p, _ in cfg.preds(h)):
            continue
        body = _natural_loop(cfg, h, rank)
        if n in body and (best is None or len(body) < len(best[1])):
            best = (h, body)
    return best
