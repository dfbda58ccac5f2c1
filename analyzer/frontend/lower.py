"""Lower tree-sitter-c syntax trees of raw kernel C into krefaudit's IR.

This module and ``parse.py`` are the only ones that see tree-sitter nodes.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache

from tree_sitter import Node

from analyzer.ir import (
    CFG,
    AddrOf,
    Body,
    Call,
    Const,
    Deref,
    Edge,
    Expr,
    Field,
    FileIR,
    FnPtrStore,
    Function,
    Index,
    Instr,
    Kind,
    Loc,
    Name,
    Op,
    Param,
    Skipped,
    Status,
    TypeRef,
    calls_in,
    pack_accesses,
    pack_calls,
    peel,
    shared_state,
)

# Calls after which control does not continue.
NORETURN = frozenset(
    [
        "BUG",
        "panic",
        "do_exit",
        "do_group_exit",
        "__builtin_unreachable",
        "unreachable",
        "__builtin_trap",
        "kthread_exit",
        "make_task_dead",
        "BUG_ON_UNREACHABLE",
    ]
)
_MACRO_ALIAS_RE = re.compile(r"^\s*\(?\s*([A-Za-z_]\w*)\s*(\(([^()]*)\))?\s*\)?\s*$")


# Per-function budgets: a function over them is reported as skipped, with the reason.
MAX_CFG_NODES = 250_000
MAX_LOWERING_SECONDS = 20.0


_STEPS = {"pre++": "+", "post++": "+", "pre--": "-", "post--": "-"}


class BudgetError(Exception):
    """A function over its size or time budget; it is reported as skipped."""


# Leaves repeat a lot within a file (`page`, `0`, `struct page *`): one object each, so
# a file's IR is smaller and pickles (to the fact store, between processes) faster.
_name = lru_cache(maxsize=1 << 16)(Name)
_const = lru_cache(maxsize=1 << 12)(Const)
_type = lru_cache(maxsize=1 << 12)(TypeRef)


def _text(node: Node | None) -> str:
    text = None if node is None else node.text  # each read of Node.text copies the bytes
    return "" if text is None else text.decode("utf-8", "replace")


def _token(node: Node | None) -> str:
    """The text of an operator: for a token (an anonymous node), its node type, which
    tree-sitter spells as the token, so the source is not sliced and decoded."""
    if node is None or node.is_missing:
        return ""
    return _text(node) if node.is_named else node.type


def _loc(node: Node) -> Loc:
    row, col = node.start_point
    return Loc(row + 1, col + 1)


# ---------------------------------------------------------------- types and declarators
def _base_type(type_node: Node | None) -> tuple[str, str | None]:
    if type_node is None:
        return "int", None
    if type_node.type in ("struct_specifier", "union_specifier"):
        name = type_node.child_by_field_name("name")
        return _text(type_node), _text(name) if name is not None else None
    return " ".join(_text(type_node).split()), None


def _declarator_name(decl: Node | None) -> tuple[str | None, int, Node | None]:
    """(name, pointer depth, function_declarator if any) of a declarator."""
    ptr = 0
    func: Node | None = None
    while decl is not None:
        t = decl.type
        if t in ("identifier", "field_identifier", "type_identifier"):
            return _text(decl), ptr, func
        if t in ("pointer_declarator", "abstract_pointer_declarator") or t in (
            "array_declarator",
            "abstract_array_declarator",
        ):
            ptr += 1
        elif t in ("function_declarator", "abstract_function_declarator"):
            if func is None:
                func = decl
        elif t not in ("parenthesized_declarator", "attributed_declarator", "init_declarator"):
            return None, ptr, func
        nxt = decl.child_by_field_name("declarator")
        if nxt is None:
            nxt = next((c for c in decl.named_children if c.type.endswith("declarator")), None)
            if nxt is None:
                ident = next(
                    (
                        c
                        for c in decl.named_children
                        if c.type in ("identifier", "field_identifier")
                    ),
                    None,
                )
                nxt = ident
        decl = nxt
    return None, ptr, func


def _typeref(type_node: Node | None, ptr: int) -> TypeRef:
    text, struct = _base_type(type_node)
    return _type(text + " " + "*" * ptr if ptr else text, struct, ptr)


def _params(func_decl: Node) -> tuple[Param, ...]:
    plist = func_decl.child_by_field_name("parameters")
    if plist is None:
        return ()
    out: list[Param] = []
    for p in plist.named_children:
        if p.type != "parameter_declaration":
            continue
        type_node = p.child_by_field_name("type")
        name, ptr, fdecl = _declarator_name(p.child_by_field_name("declarator"))
        if fdecl is not None:  # a function-pointer parameter
            ptr = max(ptr, 1)
        tref = _typeref(type_node, ptr)
        if name is None and tref.text == "void" and ptr == 0:
            continue
        out.append(Param(name, tref))
    return tuple(out)


# ---------------------------------------------------------------- CFG builder
@dataclass
class _Loop:
    breaks: list[Edge] = field(default_factory=list)
    continues: list[Edge] = field(default_factory=list)
    is_switch: bool = False


class _Builder:
    """Builds a CFG while statements are lowered; `frontier` holds the dangling edges."""

    def __init__(self, start: Loc, end: Loc) -> None:
        self.instrs: list[Instr] = [Instr(Kind.ENTRY, start), Instr(Kind.EXIT, end)]
        self.succs: list[list[Edge]] = [[], []]
        self.frontier: list[Edge] = [(CFG.ENTRY, None)]
        self.loops: list[_Loop] = []
        self.labels: dict[str, int] = {}
        self.locals: dict[str, TypeRef] = {}
        self.fnptr_stores: list[FnPtrStore] = []
        self.errors = 0
        self.started = time.monotonic()

    def node(self, ins: Instr) -> int:
        self.instrs.append(ins)
        self.succs.append([])
        n = len(self.instrs)
        if n % 4096 == 0:
            if n > MAX_CFG_NODES:
                raise BudgetError(f"over the size budget: more than {MAX_CFG_NODES} CFG nodes")
            if time.monotonic() - self.started > MAX_LOWERING_SECONDS:
                raise BudgetError(f"over the time budget: {MAX_LOWERING_SECONDS:.0f} s to lower")
        return n - 1

    def connect(self, edges: list[Edge], target: int) -> None:
        for src, pol in edges:
            if (target, pol) not in self.succs[src]:
                self.succs[src].append((target, pol))

    def emit(self, ins: Instr) -> int:
        n = self.node(ins)
        self.connect(self.frontier, n)
        self.frontier = [(n, None)]
        return n

    def label(self, name: str, loc: Loc) -> int:
        if name not in self.labels:
            self.labels[name] = self.node(Instr(Kind.NOP, loc, label=name))
        return self.labels[name]

    def cfg(self) -> CFG:
        self.connect(self.frontier, CFG.EXIT)
        return CFG(self.instrs, self.succs)


# ---------------------------------------------------------------- function lowering
class _FunctionLowering:
    def __init__(self, b: _Builder) -> None:
        self.b = b

    # -- expressions: returns the value; embedded assignments become instructions first
    def expr(self, n: Node | None) -> Expr:
        if n is None:
            return _const("")
        t = n.type
        if t == "identifier":
            return _name(_text(n))
        if t in ("number_literal", "string_literal", "char_literal", "true", "false", "null"):
            return _const(_text(n)[:40])
        if t == "concatenated_string":
            return _const('"..."')
        if t == "parenthesized_expression":
            inner = [c for c in n.named_children if c.type != "comment"]
            if len(inner) == 1 and inner[0].type == "compound_statement":
                return self.statement_expression(inner[0])
            return self.expr(inner[-1]) if inner else _const("")
        if t == "field_expression":
            op = n.child_by_field_name("operator")
            return Field(
                self.expr(n.child_by_field_name("argument")),
                _text(n.child_by_field_name("field")),
                _token(op) == "->",
            )
        if t == "subscript_expression":
            return Index(
                self.expr(n.child_by_field_name("argument")),
                self.expr(n.child_by_field_name("index")),
            )
        if t == "pointer_expression":
            arg = self.expr(n.child_by_field_name("argument"))
            return AddrOf(arg) if _token(n.child_by_field_name("operator")) == "&" else Deref(arg)
        if t == "call_expression":
            return self.call(n)
        if t == "cast_expression":
            return Op("cast", (self.expr(n.child_by_field_name("value")),))
        if t == "assignment_expression":
            return self.assignment(n)
        if t == "update_expression":
            step = _token(n.child_by_field_name("operator"))
            prefix = n.children[0].type in ("++", "--")
            return Op(
                ("pre" if prefix else "post") + step,
                (self.expr(n.child_by_field_name("argument")),),
            )
        if t == "conditional_expression":
            return Op(
                "?:",
                (
                    self.expr(n.child_by_field_name("condition")),
                    self.expr(n.child_by_field_name("consequence")),
                    self.expr(n.child_by_field_name("alternative")),
                ),
            )
        if t in ("binary_expression", "comma_expression"):
            left = self.expr(n.child_by_field_name("left"))
            right = self.expr(n.child_by_field_name("right"))
            op = n.child_by_field_name("operator")
            return Op(_token(op) if op is not None else ",", (left, right))
        if t == "unary_expression":
            return Op(
                _token(n.child_by_field_name("operator")),
                (self.expr(n.child_by_field_name("argument")),),
            )
        if t in ("sizeof_expression", "alignof_expression", "offsetof_expression"):
            return _const(t.split("_")[0])
        if t == "compound_literal_expression":
            self.initializer(n.child_by_field_name("value"))
            return _const("(compound literal)")
        if t == "initializer_list":
            return self.initializer(n)
        if t == "gnu_asm_expression":
            return _const("asm")
        if t == "ERROR" or n.is_missing:
            self.b.errors += 1
        # Anything else (generic selection, extension keywords, errors): keep its calls.
        subs = tuple(self.expr(c) for c in n.named_children if c.type != "comment")
        return Op(t, subs)

    def initializer(self, n: Node | None) -> Expr:
        if n is None:
            return _const("{}")
        values: list[Expr] = []
        for c in n.named_children:
            if c.type == "initializer_pair":
                designator = c.child_by_field_name("designator")
                value_node = c.child_by_field_name("value")
                value = self.expr(value_node)
                if designator is not None and designator.type == "field_designator":
                    self.fnptr_candidate(_text(designator).lstrip("."), value, _loc(c))
                values.append(value)
            elif c.type != "comment":
                values.append(self.expr(c))
        return Op("{}", tuple(values))

    def fnptr_candidate(self, field_name: str, value: Expr, loc: Loc) -> None:
        if isinstance(value, AddrOf):
            value = value.operand
        if isinstance(value, Name):
            self.b.fnptr_stores.append(FnPtrStore(field_name, value.id, loc))

    def call(self, n: Node) -> Call:
        fn = n.child_by_field_name("function")
        args_node = n.child_by_field_name("arguments")
        args = tuple(
            self.expr(a)
            for a in (args_node.named_children if args_node is not None else [])
            if a.type != "comment"
        )
        if fn is not None and fn.type == "identifier":
            return Call(_text(fn), None, args, _loc(n))
        target = self.expr(fn)
        stripped = peel(target, Deref)
        callee = None
        if isinstance(stripped, Field):
            callee = stripped.name  # ops->fault(vmf): resolved through function-pointer stores
        elif isinstance(stripped, Name):
            callee = stripped.id
        return Call(callee, target, args, _loc(n))

    def assignment(self, n: Node) -> Expr:
        lhs = self.expr(n.child_by_field_name("left"))
        rhs = self.expr(n.child_by_field_name("right"))
        op = _token(n.child_by_field_name("operator"))
        if op != "=":
            rhs = Op(op[:-1], (lhs, rhs))
        elif isinstance(lhs, Field):
            self.fnptr_candidate(lhs.name, rhs, _loc(n))
        self.b.emit(Instr(Kind.ASSIGN, _loc(n), lhs, rhs, tuple(calls_in(rhs))))
        return lhs

    def statement_expression(self, block: Node) -> Expr:
        """GNU ``({ ...; value; })``: lower the statements, the value is the last one."""
        stmts = [c for c in block.named_children if c.type != "comment"]
        for s in stmts[:-1]:
            self.stmt(s)
        if stmts and stmts[-1].type == "expression_statement":
            inner = [c for c in stmts[-1].named_children if c.type != "comment"]
            return self.expr(inner[0]) if inner else _const("")
        if stmts:
            self.stmt(stmts[-1])
        return _const("")

    def eval(self, e: Expr, loc: Loc) -> None:
        calls = tuple(calls_in(e))
        if isinstance(e, Op) and e.op in _STEPS and not calls:
            # `pages++;` moves what a variable points at: an assignment for the analyses.
            (target,) = e.operands
            self.b.emit(Instr(Kind.ASSIGN, loc, target, Op(_STEPS[e.op], (target, _const("1")))))
            return
        if not calls:
            return
        self.b.emit(Instr(Kind.EVAL, loc, None, e, calls))
        if any(c.callee in NORETURN and not c.indirect for c in calls):
            self.b.frontier = []

    def branch(self, cond_node: Node | None, loc: Loc) -> int:
        cond = self.expr(cond_node) if cond_node is not None else _const("1")
        return self.b.emit(Instr(Kind.BRANCH, loc, None, cond, tuple(calls_in(cond))))

    # -- statements
    def stmt(self, n: Node) -> None:
        t = n.type
        b = self.b
        handler = getattr(self, "s_" + t, None)
        if handler is not None:
            handler(n)
        elif (
            t in ("comment", ";", "{", "}", "type_definition", "struct_specifier", "empty")
            or t.startswith("preproc_")
            and t not in ("preproc_if", "preproc_ifdef")
        ):
            return
        elif t == "ERROR":
            b.errors += 1
            for c in n.children:
                if c.is_named:
                    self.stmt(c)
        elif n.is_named and (t.endswith("_expression") or t == "identifier"):
            self.eval(self.expr(n), _loc(n))

    def s_compound_statement(self, n: Node) -> None:
        for c in n.children:
            self.stmt(c)

    def s_expression_statement(self, n: Node) -> None:
        for c in n.named_children:
            if c.type == "gnu_asm_expression":
                self.asm(c)
            elif c.type != "comment":
                self.eval(self.expr(c), _loc(c))
        if any(c.is_missing for c in n.children):
            self.b.errors += 1

    def s_declaration(self, n: Node) -> None:
        type_node = n.child_by_field_name("type")
        for d in n.children_by_field_name("declarator"):
            name, ptr, fdecl = _declarator_name(d)
            if fdecl is not None and ptr == 0:
                continue  # a local prototype
            if name is not None:
                self.b.locals[name] = _typeref(type_node, ptr)
            if d.type == "init_declarator" and name is not None:
                value = d.child_by_field_name("value")
                rhs = (
                    self.initializer(value)
                    if value is not None and value.type == "initializer_list"
                    else self.expr(value)
                )
                self.b.emit(Instr(Kind.ASSIGN, _loc(d), _name(name), rhs, tuple(calls_in(rhs))))

    def s_return_statement(self, n: Node) -> None:
        inner = [c for c in n.named_children if c.type != "comment"]
        value = self.expr(inner[0]) if inner else None
        self.b.emit(Instr(Kind.RETURN, _loc(n), None, value, tuple(calls_in(value))))
        self.b.connect(self.b.frontier, CFG.EXIT)
        self.b.frontier = []

    def s_if_statement(self, n: Node) -> None:
        cond = n.child_by_field_name("condition")
        br = self.branch(cond, _loc(n))
        b = self.b
        b.frontier = [(br, True)]
        cons = n.child_by_field_name("consequence")
        if cons is not None:
            self.stmt(cons)
        after_then = b.frontier
        b.frontier = [(br, False)]
        alt = n.child_by_field_name("alternative")
        if alt is not None:
            for c in alt.named_children:  # else_clause
                self.stmt(c)
        b.frontier = after_then + b.frontier

    def _loop_body(self, body: Node | None) -> _Loop:
        """Lower a loop body; the frontier then includes its `continue` edges."""
        b = self.b
        loop = _Loop()
        b.loops.append(loop)
        if body is not None:
            self.stmt(body)
        b.loops.pop()
        b.frontier = b.frontier + loop.continues
        return loop

    def s_while_statement(self, n: Node) -> None:
        b = self.b
        head = self.branch(n.child_by_field_name("condition"), _loc(n))
        b.frontier = [(head, True)]
        loop = self._loop_body(n.child_by_field_name("body"))
        b.connect(b.frontier, head)
        b.frontier = [(head, False), *loop.breaks]

    def s_for_statement(self, n: Node) -> None:
        b = self.b
        init = n.child_by_field_name("initializer")
        if init is not None:
            self.stmt(init)
        cond = n.child_by_field_name("condition")
        if cond is not None:
            head = self.branch(cond, _loc(cond))
            b.frontier = [(head, True)]
        else:
            head = b.emit(Instr(Kind.NOP, _loc(n)))
        update = n.child_by_field_name("update")
        loop = self._loop_body(n.child_by_field_name("body"))
        if update is not None:
            self.eval(self.expr(update), _loc(update))
        b.connect(b.frontier, head)
        b.frontier = ([(head, False)] if cond is not None else []) + loop.breaks

    def s_do_statement(self, n: Node) -> None:
        b = self.b
        top = b.emit(Instr(Kind.NOP, _loc(n)))
        loop = self._loop_body(n.child_by_field_name("body"))
        cond = n.child_by_field_name("condition")
        if cond is not None and _text(cond).strip("() \t") in ("0", "false"):
            b.frontier = b.frontier + loop.breaks  # do { } while (0): no back edge
            return
        head = self.branch(cond, _loc(cond) if cond is not None else _loc(n))
        b.connect([(head, True)], top)
        b.frontier = [(head, False), *loop.breaks]

    def s_switch_statement(self, n: Node) -> None:
        b = self.b
        sw = self.branch(n.child_by_field_name("condition"), _loc(n))
        loop = _Loop(is_switch=True)
        b.loops.append(loop)
        b.frontier = []
        has_default = False
        body = n.child_by_field_name("body")
        for c in body.children if body is not None else []:
            if c.type == "case_statement":
                has_default |= c.child_by_field_name("value") is None
                b.frontier = [*b.frontier, (sw, None)]
                for s in c.children:
                    if s.is_named and s != c.child_by_field_name("value"):
                        self.stmt(s)
            else:
                self.stmt(c)
        b.loops.pop()
        b.frontier = b.frontier + loop.breaks + ([] if has_default else [(sw, None)])

    def s_break_statement(self, n: Node) -> None:
        if self.b.loops:
            self.b.loops[-1].breaks.extend(self.b.frontier)
        self.b.frontier = []

    def s_continue_statement(self, n: Node) -> None:
        loops = [lp for lp in self.b.loops if not lp.is_switch]
        if loops:
            loops[-1].continues.extend(self.b.frontier)
        self.b.frontier = []

    def s_goto_statement(self, n: Node) -> None:
        label = n.child_by_field_name("label")
        self.b.connect(self.b.frontier, self.b.label(_text(label), _loc(n)))
        self.b.frontier = []

    def s_labeled_statement(self, n: Node) -> None:
        b = self.b
        target = b.label(_text(n.child_by_field_name("label")), _loc(n))
        b.connect(b.frontier, target)
        b.frontier = [(target, None)]
        for c in n.named_children:
            if c != n.child_by_field_name("label"):
                self.stmt(c)

    def s_attributed_statement(self, n: Node) -> None:
        for c in n.named_children:
            if c.type != "attribute_declaration":
                self.stmt(c)

    def s_case_statement(self, n: Node) -> None:  # a case outside a switch body (recovery)
        for c in n.named_children:
            if c != n.child_by_field_name("value"):
                self.stmt(c)

    def asm(self, n: Node) -> None:
        """``asm goto``: control may continue or jump to any listed label."""
        b = self.b
        goto_list = next((c for c in n.named_children if c.type == "gnu_asm_goto_list"), None)
        if goto_list is None:
            return
        node = b.emit(Instr(Kind.NOP, _loc(n)))
        for lab in goto_list.named_children:
            if lab.type == "identifier":
                b.connect([(node, None)], b.label(_text(lab), _loc(lab)))

    def preproc_conditional(self, n: Node) -> None:
        """``#if``/``#ifdef`` inside a body: either branch may be the compiled one."""
        b = self.b
        fork = b.emit(Instr(Kind.NOP, _loc(n)))
        ends: list[Edge] = []
        b.frontier = [(fork, None)]
        alt: Node | None = n.child_by_field_name("alternative")
        skip = (alt, n.child_by_field_name("name"), n.child_by_field_name("condition"))
        for c in n.named_children:
            if c not in skip:
                self.stmt(c)
        ends.extend(b.frontier)
        b.frontier = [(fork, None)]
        if alt is not None:
            if alt.type == "preproc_else":
                for c in alt.named_children:
                    self.stmt(c)
            else:  # preproc_elif / preproc_elifdef
                self.preproc_conditional(alt)
        b.frontier = ends + b.frontier

    s_preproc_if = preproc_conditional
    s_preproc_ifdef = preproc_conditional
    s_preproc_elif = preproc_conditional
    s_preproc_elifdef = preproc_conditional


def lower_function(
    n: Node, path: str, annotations: tuple[tuple[str, str], ...], fnptr_stores: list[FnPtrStore]
) -> Function | Skipped:
    """Lower one function definition; its function-pointer stores go to `fnptr_stores`."""
    decl = n.child_by_field_name("declarator")
    name, _ptr, fdecl = _declarator_name(decl)
    body = n.child_by_field_name("body")
    line = n.start_point[0] + 1
    if name is None or body is None:
        return Skipped(name or _text(decl)[:40] or "?", line, "function declarator not understood")
    # `DEFINE_INTERRUPT_HANDLER(name) { ... }` reads as a type and a parenthesized name:
    # a function whose head a macro writes. Its body is lowered; its parameters, hidden
    # in the macro, are unknown, so it counts as recovered.
    macro_head = fdecl is None
    params = _params(fdecl) if fdecl is not None else ()
    specs = {_text(c) for c in n.children if c.type == "storage_class_specifier"}
    b = _Builder(_loc(n), Loc(n.end_point[0] + 1, n.end_point[1] + 1))
    for p in params:
        if p.name:
            b.locals[p.name] = p.type
    lowering = _FunctionLowering(b)
    try:
        lowering.stmt(body)
    except RecursionError:
        return Skipped(name, line, "nesting too deep to lower")
    except BudgetError as e:
        return Skipped(name, line, str(e))
    cfg = b.cfg()
    shared, accesses = shared_state((e for ins in cfg.instrs for e in (ins.lhs, ins.rhs)), b.locals)
    callees, sites = pack_calls(cfg)
    fn = Function(
        name=name,
        path=path,
        loc=_loc(n),
        end_line=n.end_point[0] + 1,
        static="static" in specs,
        inline="inline" in specs or any(_text(c) == "inline" for c in n.children),
        params=params,
        ret=_typeref(n.child_by_field_name("type"), _ptr),
        annotations=annotations,
        callees=callees,
        sites=sites,
        shared=shared,
        packed_accesses=pack_accesses(accesses),
        text_digest=hashlib.blake2b(n.text or b"", digest_size=16).digest(),
        body=Body(cfg, b.locals),
        status=Status.RECOVERED if (b.errors or n.has_error or macro_head) else Status.CLEAN,
    )
    fnptr_stores.extend(b.fnptr_stores)
    return fn


def _struct_fields(n: Node, out: dict[str, dict[str, TypeRef]]) -> None:
    name = n.child_by_field_name("name")
    body = n.child_by_field_name("body")
    if name is None or body is None:
        return
    fields = out.setdefault(_text(name), {})
    for fd in body.named_children:
        if fd.type != "field_declaration":
            continue
        type_node = fd.child_by_field_name("type")
        for d in fd.children_by_field_name("declarator"):
            fname, ptr, _f = _declarator_name(d)
            if fname is not None:
                fields[fname] = _typeref(type_node, ptr)


def _top_declaration(n: Node, file_ir: FileIR, lowering: _FunctionLowering) -> None:
    type_node = n.child_by_field_name("type")
    if type_node is not None and type_node.type in ("struct_specifier", "union_specifier"):
        _struct_fields(type_node, file_ir.struct_fields)
    for d in n.children_by_field_name("declarator"):
        name, _ptr, fdecl = _declarator_name(d)
        if name is None:
            continue
        if fdecl is not None and d.type != "init_declarator":
            file_ir.prototypes.setdefault(name, _params(fdecl))
        elif d.type == "init_declarator":
            value = d.child_by_field_name("value")
            if value is not None and value.type == "initializer_list":
                lowering.initializer(value)


def _macro(n: Node, file_ir: FileIR) -> None:
    name = _text(n.child_by_field_name("name"))
    value = _text(n.child_by_field_name("value")).replace("\\\n", " ")
    m = _MACRO_ALIAS_RE.match(value)
    if name and m:
        file_ir.macro_aliases[name] = m.group(1)


def lower_file(root: Node, path: str, annotations: list[tuple[int, str, str]]) -> FileIR:
    """Lower every function definition of a parsed file; collect the file-level facts."""
    file_ir = FileIR(path)
    top = _Builder(Loc(1, 1), Loc(1, 1))
    top_lowering = _FunctionLowering(top)
    fnptr_stores: list[FnPtrStore] = []
    ann_offsets = sorted(annotations)
    stack = [root]
    while stack:
        n = stack.pop()
        t = n.type
        if t == "function_definition":
            body = n.child_by_field_name("body")
            start, stop = n.start_byte, body.start_byte if body is not None else n.end_byte
            own = tuple((k, a) for off, k, a in ann_offsets if start <= off < stop)
            res = lower_function(n, path, own, fnptr_stores)
            if isinstance(res, Skipped):
                file_ir.skipped.append(res)
            else:
                file_ir.functions.append(res)
        elif t == "declaration":
            _top_declaration(n, file_ir, top_lowering)
        elif t in ("struct_specifier", "union_specifier"):
            _struct_fields(n, file_ir.struct_fields)
        elif t in ("preproc_function_def", "preproc_def"):
            _macro(n, file_ir)
        elif t in ("type_definition", "field_declaration_list"):
            for c in n.named_children:
                if c.type in ("struct_specifier", "union_specifier"):
                    _struct_fields(c, file_ir.struct_fields)
        else:
            # translation_unit, preproc blocks, linkage specs, ERROR: look inside.
            stack.extend(reversed(n.children))
    file_ir.fnptr_stores = [*fnptr_stores, *top.fnptr_stores]
    file_ir.functions.sort(key=lambda f: (f.loc, f.name))
    # Keys do not hold lines, so that an edit above a function keeps its identity.
    count: dict[str, int] = {}
    for fn in file_ir.functions:
        count[fn.name] = k = count.get(fn.name, 0) + 1
        fn.key = f"{path}:{fn.name}" + (f"#{k}" if k > 1 else "")
    return file_ir
