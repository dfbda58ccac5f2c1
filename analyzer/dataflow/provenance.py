"""Page provenance: which values may hold a page from the GUP family (a may-analysis).

Within a function the state maps local access paths to the origin of the page they may
hold: ``page`` (the variable) and ``pages[]`` (any element of the array or pointee).
Across functions, facts are global and grow until nothing changes:
- struct fields, by the struct's type and the field's name (``struct dio.pages[]``,
  ``struct dio.cur_page``), or by name alone where the base's type is unknown;
- parameters of a callee that some caller passes a GUP page (or array of them);
- return values, and arrays a callee fills through a ``struct page **`` parameter.
Every fact carries its origin: the trace from the GUP call, one step per store, load,
call and return that carried the page.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer.dataflow.solver import BudgetExceeded, ForwardSolver
from analyzer.ir import (
    AddrOf,
    Call,
    Deref,
    Expr,
    Field,
    Function,
    Index,
    Kind,
    Loc,
    Name,
    Op,
    TypeRef,
    render,
    type_name,
)
from analyzer.model import Location, TraceStep
from analyzer.program.model import Program
from analyzer.rules.loader import GupApi


@dataclass(frozen=True, slots=True)
class Origin:
    source: str  # the GUP-family function the page came from
    steps: tuple[TraceStep, ...]

    def then(self, step: TraceStep) -> Origin:
        return Origin(self.source, (*self.steps, step))

    @property
    def rank(self) -> tuple[int, list[tuple[Location, str]]]:
        return (len(self.steps), [(s.location, s.note) for s in self.steps])


def _better(a: Origin | None, b: Origin | None) -> Origin | None:
    """The origin kept where two meet: the shorter trace, then the earlier one."""
    if a is None:
        return b
    if b is None or a.rank <= b.rank:
        return a
    return b


State = dict[str, Origin]
# Facts about global variables share the field table under this pseudo struct name.
GLOBAL = "<global>"
FieldKey = tuple[str | None, str, bool]  # (struct or type name, field, element?)


@dataclass(frozen=True, slots=True)
class RefSite:
    """A reference primitive called on a value that may hold a GUP page."""

    function: Function
    node: int
    call: Call
    sink: str
    page: Expr
    origin: Origin


def holds_page(t: TypeRef | None, elem: bool) -> bool:
    """Whether a place of type `t` can hold a page pointer (`elem`: an array of them).
    Unknown types are given the benefit of the doubt; `void *` parameters are not: they
    are where page arrays go to generic memory functions (kfree, memcpy)."""
    if t is None:
        return True
    if t.struct == "page":
        return t.ptr >= 2 if elem else t.ptr == 1
    return False


def expr_type(program: Program, fn: Function, e: Expr) -> TypeRef | None:
    """The static type of an access path, where locals, parameters and struct fields tell."""
    match e:
        case Name(id=i):
            return fn.locals.get(i)
        case Field(base=b, name=f):
            return program.field_type(type_name(expr_type(program, fn, b)), f)
        case Index(base=b) | Deref(operand=b):
            t = expr_type(program, fn, b)
            return TypeRef(t.text, t.struct, t.ptr - 1) if t is not None else None
        case AddrOf(operand=x):
            t = expr_type(program, fn, x)
            return TypeRef(t.text, t.struct, t.ptr + 1) if t is not None else None
    return None


def pages_arg(program: Program, fn: Function, name: str, call: Call) -> tuple[Expr | None, bool]:
    """The argument of a GUP array call that receives the pages: the `struct page **`
    parameter of the tree's prototype (`struct page ***`: the callee allocates the
    array), else the argument whose static type is an array of page pointers."""
    params = program.prototypes.get(name)
    if params:
        for i, p in enumerate(params):
            if p.type.struct == "page" and p.type.ptr >= 2 and i < len(call.args):
                return call.args[i], p.type.ptr >= 3
    for arg in call.args:
        t = expr_type(program, fn, arg)
        if t is not None and t.struct == "page" and t.ptr >= 2:
            return arg, t.ptr >= 3
    return None, False


class Provenance:
    def __init__(self, program: Program, gup: GupApi, sinks: dict[str, int]) -> None:
        self.program = program
        self.gup = gup
        self.sinks = sinks  # reference primitive -> page argument index
        self.fields: dict[FieldKey, Origin] = {}
        self.params: dict[tuple[str, int, bool], Origin] = {}
        self.returns: dict[str, Origin] = {}
        self.outs: dict[tuple[str, int], Origin] = {}
        # Every call site that passes a GUP page to a parameter, with the page's origin:
        # (callee, caller, line of the call) -> origin up to and including the call.
        self.arrivals: dict[tuple[str, str, int], Origin] = {}
        self.sites: dict[tuple[str, int, int], RefSite] = {}
        self.skipped: list[tuple[Function, str]] = []
        self._order = {
            fn.key: i for i, fn in enumerate([*program.functions(), *program.context_functions()])
        }
        self._users: dict[str, list[Function]] | None = None
        self._accessed: dict[str, frozenset[tuple[str | None, str]]] = {}
        # What the function being analyzed changed: ("field", field, struct) (struct
        # GLOBAL for a global), ("param" | "ret" | "out", function key, None).
        self._dirty: set[tuple[str, str, str | None]] = set()

    # ---------------------------------------------------------------- driver
    def run(self) -> list[RefSite]:
        work: list[tuple[int, str]] = []
        queued: set[str] = set()

        def push(fns: Iterable[Function]) -> None:
            for f in fns:
                if f.key not in queued and f.key in self._order:
                    queued.add(f.key)
                    heapq.heappush(work, (self._order[f.key], f.key))

        push(self.program.calling(self.gup.array | self.gup.single))
        limit = 20 * max(len(self._order), 1)
        while work and limit > 0:
            limit -= 1
            _, key = heapq.heappop(work)
            queued.discard(key)
            fn = self.program.by_key[key]
            self._dirty = set()
            try:
                self._analyze(fn)
            except BudgetExceeded as e:
                self.skipped.append((fn, str(e)))
            push(self._affected())
        return [self.sites[k] for k in sorted(self.sites, key=self._site_order)]

    def _site_order(self, k: tuple[str, int, int]) -> tuple[str, Loc, int]:
        site = self.sites[k]
        return (site.function.path, site.call.loc, k[2])

    def _affected(self) -> list[Function]:
        out: list[Function] = []
        for kind, key, struct in self._dirty:  # any order: the work list pops in program order
            if kind == "field":
                out.extend(self._field_readers(struct, key))
            elif kind == "param":
                out.append(self.program.by_key[key])
            else:  # a return value or out-array of `key` changed: its callers
                out.extend(site.caller for site in self.program.callers(self.program.by_key[key]))
        return out

    def _field_readers(self, struct: str | None, name: str) -> list[Function]:
        """The functions that may read the facts of field `name` of `struct` (a global
        `name` for GLOBAL), in order: of those that use the name (Function.shared, read
        without the body), the ones with an access keyed as _field() keys it. The
        others would find nothing new."""
        if self._users is None:
            users: dict[str, list[Function]] = defaultdict(list)
            for key in self._order:
                fn = self.program.by_key[key]
                for shared in fn.shared:
                    users[shared].append(fn)
            self._users = users
        candidates = self._users.get(name, [])
        if struct == GLOBAL:
            return candidates
        return [fn for fn in candidates if (struct, name) in self._field_accesses(fn)]

    def _field_accesses(self, fn: Function) -> frozenset[tuple[str | None, str]]:
        """(struct, field) of every field access in `fn`, the struct as _field() and
        _store() name it (expr_type() of its base), worked out from Function.accesses
        without the body."""
        if fn.key not in self._accessed:
            found = set()
            for struct, path in fn.accesses:
                for f in path[:-1]:
                    struct = type_name(self.program.field_type(struct, f))
                found.add((struct, path[-1]))
            self._accessed[fn.key] = frozenset(found)
        return self._accessed[fn.key]

    # ---------------------------------------------------------------- one function
    def _analyze(self, fn: Function) -> None:
        entry: State = {}
        for i, p in enumerate(fn.params):
            if p.name is None:
                continue
            for elem in (False, True):
                o = self.params.get((fn.key, i, elem))
                if o is not None:
                    entry[p.name + ("[]" if elem else "")] = o
        solver: ForwardSolver[State] = ForwardSolver(lambda n, s: self._transfer(fn, n, s), _join)
        solver.solve(fn.cfg, entry)

    def _step(self, fn: Function, loc: Loc, note: str) -> TraceStep:
        return TraceStep(Location(fn.path, loc.line, loc.col), fn.name, note)

    def _transfer(self, fn: Function, n: int, state: State) -> State:
        ins = fn.cfg.instrs[n]
        new = dict(state)
        for i, call in enumerate(ins.calls):
            self._call(fn, n, i, call, state, new)
        if ins.kind is Kind.ASSIGN and ins.lhs is not None and ins.rhs is not None:
            val = self.value(fn, ins.rhs, state, ins.loc)
            elem = self.elem(fn, ins.rhs, state, ins.loc)
            self._store(fn, ins.lhs, val, elem, new, ins.loc)
        elif ins.kind is Kind.RETURN and ins.rhs is not None:
            val = self.value(fn, ins.rhs, state, ins.loc)
            if val is not None:
                step = self._step(fn, ins.loc, f"returned by {fn.name}()")
                self._fact(self.returns, fn.key, val.then(step), ("ret", fn.key, None))
        return new

    # ---------------------------------------------------------------- calls
    def _call(self, fn: Function, n: int, idx: int, call: Call, state: State, new: State) -> None:
        if call.indirect and call.callee is None:
            return
        name = self.program.canonical(call.callee or "")
        if not call.indirect and name in self.gup.array:
            arg, via_pointer = pages_arg(self.program, fn, name, call)
            if arg is not None:
                step = self._step(
                    fn, call.loc, f"{name}() stores referenced user pages in {render(arg)}"
                )
                source = Origin(name, (step,))
                array = arg.operand if via_pointer and isinstance(arg, AddrOf) else arg
                if not via_pointer or isinstance(arg, AddrOf):
                    self._store_elem(fn, array, source, new, call.loc)
            return
        sink = call.callee if call.callee in self.sinks else name
        if not call.indirect and sink in self.sinks:
            k = self.sinks[sink]
            if k < len(call.args):
                page = self.value(fn, call.args[k], state, call.loc)
                if page is not None:
                    key = (fn.key, n, idx)
                    old = self.sites.get(key)
                    if old is None or page.rank < old.origin.rank:
                        self.sites[key] = RefSite(fn, n, call, sink, call.args[k], page)
            return
        for target in self.program.resolve(fn, call):
            for i, arg in enumerate(call.args):
                if i >= len(target.params):
                    break
                pname = target.params[i].name or f"#{i}"
                for elem, origin in (
                    (False, self.value(fn, arg, state, call.loc)),
                    (True, self.elem(fn, arg, state, call.loc)),
                ):
                    if origin is None or not holds_page(target.params[i].type, elem):
                        continue
                    what = f"{render(arg)} passed to {target.name}() as {pname}"
                    step = self._step(fn, call.loc, what)
                    self.arrivals.setdefault((target.key, fn.key, call.loc.line), origin.then(step))
                    self._fact(
                        self.params,
                        (target.key, i, elem),
                        origin.then(step),
                        ("param", target.key, None),
                    )
                out = self.outs.get((target.key, i))
                if out is not None:
                    step = self._step(fn, call.loc, f"{target.name}() fills {render(arg)}")
                    self._store_elem(fn, arg, out.then(step), new, call.loc)

    # ---------------------------------------------------------------- values
    def value(self, fn: Function, e: Expr, state: State, loc: Loc) -> Origin | None:
        match e:
            case Name(id=i) if i in fn.locals:
                return state.get(i)
            case Name(id=i):
                o = self.fields.get((GLOBAL, i, False))
                if o is None:
                    return None
                return o.then(self._step(fn, loc, f"page read back from global {i}"))
            case Index(base=b) | Deref(operand=b):
                o = self.elem(fn, b, state, loc)
                loaded = isinstance(b, Field) or (isinstance(b, Name) and b.id not in fn.locals)
                if o is None or not loaded:
                    return o
                return o.then(self._step(fn, loc, f"page read back from {render(e)}"))
            case Field(base=b, name=f):
                o = self._field(fn, b, f, False)
                if o is None:
                    return None
                return o.then(self._step(fn, loc, f"page read back from {render(e)}"))
            case Op(op=op, operands=ops):
                if op in ("cast", "+", "-", "pre++", "post++", "pre--", "post--") and ops:
                    return self.value(fn, ops[0], state, loc)
                if op == "?:" and len(ops) == 3:
                    return _better(
                        self.value(fn, ops[1], state, loc), self.value(fn, ops[2], state, loc)
                    )
                if op == "," and ops:
                    return self.value(fn, ops[-1], state, loc)
                return None
            case Call():
                return self._call_value(fn, e, state, loc)
        return None

    def _call_value(self, fn: Function, call: Call, state: State, loc: Loc) -> Origin | None:
        name = self.program.canonical(call.callee or "")
        if call.indirect and call.target is not None and call.callee is None:
            return None
        if name in self.gup.single and not call.indirect:
            step = self._step(fn, call.loc, f"{name}() returns a page of a user mapping")
            return Origin(name, (step,))
        if name in self.gup.passthrough and call.args:
            return self.value(fn, call.args[0], state, loc)
        if name in self.gup.head_of:
            return None
        best: Origin | None = None
        for target in self.program.resolve(fn, call):
            o = self.returns.get(target.key)
            if o is not None:
                step = self._step(fn, call.loc, f"page returned by {target.name}()")
                best = _better(best, o.then(step))
        return best

    def elem(self, fn: Function, e: Expr, state: State, loc: Loc) -> Origin | None:
        match e:
            case Name(id=i) if i in fn.locals:
                return state.get(i + "[]")
            case Name(id=i):
                return self.fields.get((GLOBAL, i, True))
            case Field(base=b, name=f):
                return self._field(fn, b, f, True)
            case AddrOf(operand=Index(base=b)):
                return self.elem(fn, b, state, loc)
            case AddrOf(operand=x):
                return self.value(fn, x, state, loc)
            case Op(op=op, operands=ops) if op in ("cast", "+", "-") and ops:
                return self.elem(fn, ops[0], state, loc)
        return None

    def _field(self, fn: Function, base: Expr, f: str, elem: bool) -> Origin | None:
        """Field facts are keyed by the base's struct type; bases whose type is unknown
        share one bucket per field name (so `x->page` with x's type unknown does not
        match every `->page` field of the kernel)."""
        return self.fields.get((type_name(expr_type(self.program, fn, base)), f, elem))

    # ---------------------------------------------------------------- stores
    def _store(
        self,
        fn: Function,
        lhs: Expr,
        val: Origin | None,
        elem: Origin | None,
        new: State,
        loc: Loc,
    ) -> None:
        match lhs:
            case Name(id=i) if i not in fn.locals:
                for is_elem, o in ((False, val), (True, elem)):
                    if o is not None:
                        step = self._step(fn, loc, f"stored into global {i}")
                        self._fact(
                            self.fields, (GLOBAL, i, is_elem), o.then(step), ("field", i, GLOBAL)
                        )
            case Name(id=i):
                t = fn.locals.get(i)
                for key, o in (
                    (i, val if holds_page(t, False) else None),
                    (i + "[]", elem if holds_page(t, True) else None),
                ):
                    if o is None:
                        new.pop(key, None)
                    else:
                        new[key] = o
            case Index(base=b) | Deref(operand=b):
                if val is not None:
                    self._store_elem(fn, b, val, new, loc)
            case Field(base=b, name=f):
                tname = type_name(expr_type(self.program, fn, b))
                ftype = self.program.field_type(tname, f)
                for is_elem, o in ((False, val), (True, elem)):
                    if o is not None and holds_page(ftype, is_elem):
                        what = f"stored into {render(lhs)}{'[]' if is_elem else ''}"
                        step = self._step(fn, loc, what)
                        self._fact(
                            self.fields, (tname, f, is_elem), o.then(step), ("field", f, tname)
                        )

    def _store_elem(self, fn: Function, base: Expr, origin: Origin, new: State, loc: Loc) -> None:
        match base:
            case Name(id=i) if i not in fn.locals:
                step = self._step(fn, loc, f"stored into global {i}[]")
                self._fact(self.fields, (GLOBAL, i, True), origin.then(step), ("field", i, GLOBAL))
            case Name(id=i):
                new[i + "[]"] = _better(new.get(i + "[]"), origin)  # type: ignore[assignment]
                for k, p in enumerate(fn.params):
                    if p.name == i:
                        step = self._step(fn, loc, f"{fn.name}() fills its parameter {i}")
                        self._fact(self.outs, (fn.key, k), origin.then(step), ("out", fn.key, None))
            case Field(base=b, name=f):
                tname = type_name(expr_type(self.program, fn, b))
                if not holds_page(self.program.field_type(tname, f), True):
                    return
                step = self._step(fn, loc, f"stored into {render(base)}[]")
                self._fact(self.fields, (tname, f, True), origin.then(step), ("field", f, tname))
            case AddrOf(operand=Index(base=b)):
                self._store_elem(fn, b, origin, new, loc)
            case AddrOf(operand=x):
                self._store(fn, x, origin, None, new, loc)
            case Op(op=op, operands=ops) if op in ("cast", "+", "-") and ops:
                self._store_elem(fn, ops[0], origin, new, loc)

    def _fact(
        self,
        table: dict[Any, Origin],
        key: object,
        origin: Origin,
        dirty: tuple[str, str, str | None],
    ) -> None:
        if key not in table:
            table[key] = origin
            self._dirty.add(dirty)


def _join(states: Sequence[State]) -> State:
    out = dict(states[0])
    for s in states[1:]:
        for k, o in s.items():
            out[k] = _better(out.get(k), o)  # type: ignore[assignment]
    return out
