"""krefaudit's own IR: expressions, instructions, a CFG per function, a record per file.

Analyses read only these types; no tree-sitter node ever leaves the front end.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from analyzer.records import record


@record
@dataclass(frozen=True, slots=True, order=True)
class Loc:
    line: int  # 1-based
    col: int  # 1-based, in bytes like the compiler's columns


# ---------------------------------------------------------------- expressions
@record
@dataclass(frozen=True, slots=True)
class Name:
    id: str


@record
@dataclass(frozen=True, slots=True)
class Field:
    base: Expr
    name: str
    arrow: bool


@record
@dataclass(frozen=True, slots=True)
class Index:
    base: Expr
    index: Expr


@record
@dataclass(frozen=True, slots=True)
class AddrOf:
    operand: Expr


@record
@dataclass(frozen=True, slots=True)
class Deref:
    operand: Expr


@record
@dataclass(frozen=True, slots=True)
class Call:
    callee: str | None  # the called name for a direct call (or a call through a field)
    target: Expr | None  # the function expression of an indirect call
    args: tuple[Expr, ...]
    loc: Loc

    @property
    def indirect(self) -> bool:
        return self.target is not None


@record
@dataclass(frozen=True, slots=True)
class Const:
    text: str


@record
@dataclass(frozen=True, slots=True)
class Op:
    """Any other operator: binary, unary, ``?:``, comma, cast (op ``cast``), sizeof."""

    op: str
    operands: tuple[Expr, ...]


Expr = Name | Field | Index | AddrOf | Deref | Call | Const | Op


def peel(e: Expr, wrapper: type[AddrOf] | type[Deref]) -> Expr:
    """`e` without casts and without `wrapper` operators around it: `(void *)&x` -> `x`."""
    while True:
        if isinstance(e, wrapper):
            e = e.operand
        elif isinstance(e, Op) and e.op == "cast":
            e = e.operands[0]
        else:
            return e


def render(e: Expr) -> str:
    """C-like text of an expression, as shown to users."""
    match e:
        case Name(id=i):
            return i
        case Field(base=b, name=n, arrow=a):
            return f"{render(b)}{'->' if a else '.'}{n}"
        case Index(base=b, index=i):
            return f"{render(b)}[{render(i)}]"
        case AddrOf(operand=o):
            return f"&{render(o)}"
        case Deref(operand=o):
            return f"*{render(o)}"
        case Call(callee=c, target=t, args=args):
            fn = c if t is None else f"({render(t)})"
            return f"{fn}({', '.join(render(a) for a in args)})"
        case Const(text=t):
            return t
        case Op(op=op, operands=ops):
            if op == "cast":
                return render(ops[0])
            if op.startswith(("pre", "post")) and len(ops) == 1:
                fix = op.removeprefix("pre").removeprefix("post")
                return (
                    f"{fix}{render(ops[0])}" if op.startswith("pre") else f"{render(ops[0])}{fix}"
                )
            if len(ops) == 1:
                inner = ops[0]
                text = render(inner)
                wrap = isinstance(inner, Op) and len(inner.operands) >= 2
                return f"{op}({text})" if wrap else f"{op}{text}"
            if op == "?:" and len(ops) == 3:
                return f"{render(ops[0])} ? {render(ops[1])} : {render(ops[2])}"
            if not ops:
                return ""
            first, *rest = ops
            return f" {op} ".join(
                [_operand(first, op, False), *(_operand(o, op, True) for o in rest)]
            )
    raise TypeError(e)


# C's binary operators by precedence, loosest first.
_PRECEDENCE = {
    op: level
    for level, ops in enumerate(
        [(",",), ("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">=")]
        + [("<<", ">>"), ("+", "-"), ("*", "/", "%")]
    )
    for op in ops
}


def _operand(e: Expr, parent: str, right: bool) -> str:
    """An operand of a binary operator, in parentheses where C's precedence needs them:
    `a && (b || c)` must not read as `a && b || c`."""
    text = render(e)
    if not isinstance(e, Op) or len(e.operands) < 2:
        return text
    mine = _PRECEDENCE.get(e.op, -1)
    theirs = _PRECEDENCE.get(parent, len(_PRECEDENCE))
    return f"({text})" if mine < theirs or (mine == theirs and right) else text


def calls_in(e: Expr | None) -> list[Call]:
    """Calls inside an expression in evaluation order (arguments before the call)."""
    out: list[Call] = []
    stack: list[tuple[Expr, bool]] = [] if e is None else [(e, False)]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)  # type: ignore[arg-type]
            continue
        match node:
            case Call(args=args, target=t):
                stack.append((node, True))
                for a in reversed(args):
                    stack.append((a, False))
                if t is not None:
                    stack.append((t, False))
            case Field(base=b) | AddrOf(operand=b) | Deref(operand=b):
                stack.append((b, False))
            case Index(base=b, index=i):
                stack.append((i, False))
                stack.append((b, False))
            case Op(operands=ops):
                for o in reversed(ops):
                    stack.append((o, False))
    return out


def subexpressions(*roots: Expr | None) -> Iterator[Expr]:
    """Every expression inside `roots` (themselves included), parents before children.
    (isinstance, not match: this runs on every instruction of a file as it is lowered,
    and class patterns cost twice as much.)"""
    stack = [e for e in reversed(roots) if e is not None]
    while stack:
        x = stack.pop()
        yield x
        if isinstance(x, Op):
            stack += reversed(x.operands)
        elif isinstance(x, Field):
            stack.append(x.base)
        elif isinstance(x, AddrOf | Deref):
            stack.append(x.operand)
        elif isinstance(x, Call):
            stack += reversed(x.args)
            if x.target is not None:
                stack.append(x.target)
        elif isinstance(x, Index):
            stack += [x.index, x.base]


def shared_state(
    roots: Iterable[Expr | None], local: Mapping[str, TypeRef]
) -> tuple[tuple[str, ...], frozenset[tuple[str | None, tuple[str, ...]]]]:
    """What expressions use of the state functions share, in one walk: the field names,
    and names that are not `local` variables (globals), sorted; and each field access as
    field_path() gives it."""
    names: set[str] = set()
    accesses: set[tuple[str | None, tuple[str, ...]]] = set()
    for x in subexpressions(*roots):
        if isinstance(x, Field):
            names.add(x.name)
            accesses.add(field_path(x, local))
        elif isinstance(x, Name) and x.id not in local:
            names.add(x.id)
    return tuple(sorted(names)), frozenset(accesses)


def field_path(x: Field, local: Mapping[str, TypeRef]) -> tuple[str | None, tuple[str, ...]]:
    """A field access as the type of the local variable it starts from and the fields
    from there to it: `d->map.pages` with `struct dio *d` gives ("dio", ("map", "pages")).
    The start is None where no local's type tells (a call's result, a global); the path
    then holds the access's field only. Enough to work out, with the program's struct
    fields, which struct the access is of (Function.accesses), without the body."""
    chain = [x.name]
    base = x.base
    while True:
        if isinstance(base, Field):
            chain.append(base.name)
            base = base.base
        elif isinstance(base, Index):
            base = base.base
        elif isinstance(base, AddrOf | Deref):
            base = base.operand
        else:
            break
    root = type_name(local.get(base.id)) if isinstance(base, Name) else None
    return (root, tuple(reversed(chain))) if root is not None else (None, (x.name,))


# ---------------------------------------------------------------- types
_QUALIFIERS = re.compile(r"\b(const|volatile|restrict)\b|\*")


def type_name(t: TypeRef | None) -> str | None:
    """The name a type's struct fields are filed under: the struct's tag, else the type's
    text without qualifiers and stars (a typedef's name)."""
    if t is None:
        return None
    return t.struct or _QUALIFIERS.sub("", t.text).strip() or None


@record
@dataclass(frozen=True, slots=True)
class TypeRef:
    """What the analyses need of a C type: the struct it names and the pointer depth."""

    text: str
    struct: str | None = None
    ptr: int = 0


@record
@dataclass(frozen=True, slots=True)
class Param:
    name: str | None
    type: TypeRef


# ---------------------------------------------------------------- instructions and CFG
class Kind(Enum):
    ENTRY = "entry"
    EXIT = "exit"
    ASSIGN = "assign"  # lhs = rhs (declarations with an initializer too)
    EVAL = "eval"  # an expression evaluated for its effect (calls)
    RETURN = "return"
    BRANCH = "branch"  # rhs is the condition; out-edges carry True/False
    NOP = "nop"  # labels, loop heads, joins


@record
@dataclass(frozen=True, slots=True)
class Instr:
    kind: Kind
    loc: Loc
    lhs: Expr | None = None
    rhs: Expr | None = None
    calls: tuple[Call, ...] = ()
    label: str | None = None  # for NOP nodes that are goto labels


# An edge: (target node, polarity); polarity is True/False out of a BRANCH, else None.
Edge = tuple[int, bool | None]


@dataclass(slots=True)
class CFG:
    instrs: list[Instr]
    succs: list[list[Edge]]
    ENTRY = 0
    EXIT = 1
    _preds: list[list[tuple[int, bool | None]]] | None = None

    def preds(self, n: int) -> list[tuple[int, bool | None]]:
        if self._preds is None:
            preds: list[list[tuple[int, bool | None]]] = [[] for _ in self.instrs]
            for a, outs in enumerate(self.succs):
                for b, pol in outs:
                    preds[b].append((a, pol))
            self._preds = preds
        return self._preds[n]

    def reverse_postorder(self) -> list[int]:
        seen = [False] * len(self.instrs)
        order: list[int] = []
        stack: list[tuple[int, int]] = [(self.ENTRY, 0)]
        seen[self.ENTRY] = True
        while stack:
            n, i = stack[-1]
            if i < len(self.succs[n]):
                stack[-1] = (n, i + 1)
                m = self.succs[n][i][0]
                if not seen[m]:
                    seen[m] = True
                    stack.append((m, 0))
            else:
                stack.pop()
                order.append(n)
        order.reverse()
        return order


# ---------------------------------------------------------------- functions and files
class Status(Enum):
    CLEAN = "clean"  # lowered, no parse error inside
    RECOVERED = "recovered"  # lowered around tree-sitter's error recovery


@record
@dataclass(frozen=True, slots=True)
class CallRef:
    """A call as the call graph sees it, without the body: the `index`-th call of CFG
    node `node`, to `callee` (see Call)."""

    node: int
    index: int
    callee: str | None
    indirect: bool
    line: int


@dataclass(slots=True)
class Body:
    """What only the analysis of a function itself reads."""

    cfg: CFG
    locals: dict[str, TypeRef]


class BodySource(Protocol):
    """Where the pickled bodies of one file's functions can be fetched from (the fact
    store), by the functions' order in the file."""

    def body(self, index: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StoredBody:
    """The body of a function whose file came from the fact store: the store keeps
    bodies apart from the rest of a file's IR, and hands them out when first read."""

    source: BodySource
    index: int


@dataclass(slots=True)
class Function:
    """A function definition. Its body is held pickled, or left in the fact store,
    until an analysis first reads it (`cfg`, `locals`, `calls()`): a program of many
    files keeps in memory only what the call graph needs of most of them."""

    name: str
    path: str  # relative to the tree root
    loc: Loc
    end_line: int
    static: bool
    inline: bool
    params: tuple[Param, ...]
    ret: TypeRef
    annotations: tuple[tuple[str, str], ...]  # (kind, argument) sparse lock annotations
    # Its calls (call_refs), packed by pack_calls(): a whole tree has 530,000, and an
    # analysis reads those of a few hundred functions; the callers index, the names.
    callees: tuple[str | None, ...]  # each call's CallRef.callee
    sites: bytes  # each call's (node, index, line, indirect), as 32-bit integers
    # shared_state() of its instructions' operands: the fields and globals it uses, and
    # which structs' fields it accesses (`accesses`, packed by pack_accesses(): read for
    # the few functions that may read a field a fact was stored into)
    shared: tuple[str, ...]  # sorted; a tuple takes a fifth of a set's memory
    packed_accesses: bytes
    # Digest of its text as parsed: two versions with one text have one body, but for
    # where it starts (a warm run moves the lines of what it reuses, see engine._reuse)
    text_digest: bytes
    # None only between take_bodies() and give_bodies()
    body: Body | bytes | StoredBody | None
    status: Status
    # Program-wide identity, "path:name" ("path:name#2" for a second definition of the
    # name in one file, under other #if branches). Set by the front end.
    key: str = ""
    _call_refs: tuple[CallRef, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _accesses: frozenset[tuple[str | None, tuple[str, ...]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def accesses(self) -> frozenset[tuple[str | None, tuple[str, ...]]]:
        if self._accesses is None:
            self._accesses = frozenset(pickle.loads(self.packed_accesses))
        return self._accesses

    @property
    def call_refs(self) -> tuple[CallRef, ...]:
        refs = self._call_refs
        if refs is None:
            ints = _ints(self.sites)
            refs = self._call_refs = tuple(
                CallRef(ints[k], ints[k + 1], callee, bool(ints[k + 3]), ints[k + 2])
                for k, callee in zip(range(0, len(ints), 4), self.callees, strict=True)
            )
        return refs

    def _body(self) -> Body:
        body = self.body
        if not isinstance(body, Body):
            body = self.body = pickle.loads(self.pickled_body())
        return body

    def pickled_body(self) -> bytes:
        body = self.body
        if isinstance(body, StoredBody):
            return body.source.body(body.index)
        if isinstance(body, Body):
            return pickle.dumps(body, pickle.HIGHEST_PROTOCOL)
        assert body is not None, f"{self.key}: body taken and not given back"
        return body

    @property
    def cfg(self) -> CFG:
        return self._body().cfg

    @property
    def locals(self) -> dict[str, TypeRef]:
        return self._body().locals

    @property
    def body_loaded(self) -> bool:
        return isinstance(self.body, Body)

    def calls(self) -> list[tuple[int, Call]]:
        return [(n, c) for n, ins in enumerate(self.cfg.instrs) for c in ins.calls]

    def __reduce__(self) -> tuple[type[Function], tuple[Any, ...]]:
        return Function, (
            self.name,
            self.path,
            self.loc,
            self.end_line,
            self.static,
            self.inline,
            self.params,
            self.ret,
            self.annotations,
            self.callees,
            self.sites,
            self.shared,
            self.packed_accesses,
            self.text_digest,
            None if self.body is None else self.pickled_body(),
            self.status,
            self.key,
        )


@record
@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    line: int
    reason: str


@record
@dataclass(frozen=True, slots=True)
class FnPtrStore:
    """A function's address stored into a struct field: a possible indirect-call target."""

    field: str
    func: str
    loc: Loc


@dataclass(slots=True)
class FileIR:
    path: str
    functions: list[Function] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    prototypes: dict[str, tuple[Param, ...]] = field(default_factory=dict)
    fnptr_stores: list[FnPtrStore] = field(default_factory=list)
    exports: frozenset[str] = frozenset()
    struct_fields: dict[str, dict[str, TypeRef]] = field(default_factory=dict)
    macro_aliases: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the file could not be read or parsed at all
    shape: str = ""  # shape_of(self), set by the front end


def shape_of(ir: FileIR) -> str:
    """Digest of everything the analyses read of a file without reading a function's
    body or its lines: the call graph, the fields and globals its functions use, the
    types, macros and exports. Two versions of a file with one shape differ only inside
    bodies, or in where things are."""
    fns = [
        (fn.key, fn.static, fn.inline, fn.params, fn.ret, fn.annotations, fn.status.value)
        + (tuple(zip(fn.callees, map(bool, _ints(fn.sites)[3::4]), strict=True)), fn.shared)
        + (fn.packed_accesses,)
        for fn in ir.functions
    ]
    stores = [(s.field, s.func) for s in ir.fnptr_stores]
    facts = (ir.prototypes, stores, sorted(ir.exports), ir.struct_fields, ir.macro_aliases)
    return hashlib.blake2b(repr((fns, facts)).encode(), digest_size=16).hexdigest()


def _ints(packed: bytes) -> array[int]:
    ints = array("i")
    ints.frombytes(packed)
    return ints


def pack_calls(cfg: CFG) -> tuple[tuple[str | None, ...], bytes]:
    """Function.callees and Function.sites of the calls in `cfg`, node by node."""
    callees: list[str | None] = []
    ints = array("i")
    for n, ins in enumerate(cfg.instrs):
        for i, c in enumerate(ins.calls):
            callees.append(c.callee)
            ints.extend((n, i, c.loc.line, c.indirect))
    return tuple(callees), ints.tobytes()


def pack_accesses(accesses: Iterable[tuple[str | None, tuple[str, ...]]]) -> bytes:
    """Function.packed_accesses, in a fixed order: equal sets pack alike."""
    return pickle.dumps(tuple(sorted(accesses, key=repr)), pickle.HIGHEST_PROTOCOL)


def take_bodies(ir: FileIR) -> tuple[bytes, ...]:
    """The pickled bodies of `ir`'s functions, in order, taken out of it: `ir` then
    pickles without them, so the fact store can keep the two apart."""
    bodies = tuple(fn.pickled_body() for fn in ir.functions)
    for fn in ir.functions:
        fn.body = None
    return bodies


def give_bodies(ir: FileIR, bodies: tuple[bytes, ...] | BodySource) -> None:
    """Put back the bodies take_bodies() took, or where the store keeps them."""
    for i, fn in enumerate(ir.functions):
        fn.body = bodies[i] if isinstance(bodies, tuple) else StoredBody(bodies, i)
