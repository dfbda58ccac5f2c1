"""IR lowering of raw kernel C: each idiom tree-sitter misparses, and the CFG shapes."""

from __future__ import annotations

import pickle

from analyzer.frontend.normalize import normalize
from analyzer.frontend.parse import parse_bytes
from analyzer.ir import (
    CFG,
    Call,
    Field,
    FileIR,
    Function,
    Index,
    Kind,
    Name,
    Status,
    pack_accesses,
    render,
)
from tests.fixture_markers import FIXTURES


def lower(src: str, path: str = "t.c") -> FileIR:
    return parse_bytes(src.encode(), path)


def only(src: str) -> Function:
    ir = lower(src)
    assert not ir.skipped, ir.skipped
    assert len(ir.functions) == 1, [f.name for f in ir.functions]
    return ir.functions[0]


def callees(fn: Function) -> list[str]:
    return [c.callee or "?" for _n, c in fn.calls()]


def call_node(fn: Function, name: str) -> int:
    return next(n for n, c in fn.calls() if c.callee == name)


def reachable(cfg: CFG, start: int, avoiding: int | None = None) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        for m, _pol in cfg.succs[stack.pop()]:
            if m not in seen and m != avoiding:
                seen.add(m)
                stack.append(m)
    return seen


def on_every_path(fn: Function, node: int) -> bool:
    """True when every path from entry to exit goes through `node`."""
    return CFG.EXIT not in reachable(fn.cfg, CFG.ENTRY, avoiding=node)


# ---------------------------------------------------------------- normalize
def test_normalize_keeps_every_offset() -> None:
    src = b"static int __init f(char __user *p) __acquires(x)\n{\n\treturn 0;\n}\n"
    out = normalize(src)
    assert len(out.text) == len(src)
    assert out.text.count(b"\n") == src.count(b"\n")
    assert [(a.kind, a.arg) for a in out.annotations] == [("__acquires", "x")]


def test_annotations_in_comments_are_not_lock_annotations() -> None:
    out = normalize(b"/* takes __acquires(x) */\nint f(void) { return 0; }\n")
    assert out.annotations == ()


# ---------------------------------------------------------------- kernel idioms
def test_iterator_macro_with_body_is_a_loop() -> None:
    fn = only(
        "void f(struct list_head *head) {\n"
        "\tstruct page *page;\n"
        "\tlist_for_each_entry(page, head, lru) {\n"
        "\t\tget_page(page);\n"
        "\t}\n"
        "\tdone();\n"
        "}\n"
    )
    assert fn.status is Status.CLEAN
    n = call_node(fn, "get_page")
    # The body is inside a loop: it can be skipped, and it can run again.
    assert not on_every_path(fn, n)
    assert n in reachable(fn.cfg, next(m for m, _ in fn.cfg.succs[n]))
    assert on_every_path(fn, call_node(fn, "done"))


def test_iterator_macro_without_braces() -> None:
    fn = only(
        "void f(void) {\n\tint cpu;\n\tfor_each_online_cpu(cpu)\n\t\tcount(cpu);\n\tafter();\n}\n"
    )
    assert fn.status is Status.CLEAN
    assert callees(fn) == ["count", "after"]
    assert not on_every_path(fn, call_node(fn, "count"))


def test_syscall_define() -> None:
    ir = lower(
        "SYSCALL_DEFINE3(mprotect, unsigned long, start, size_t, len,\n"
        "\t\tunsigned long, prot)\n{\n\treturn do_mprotect(start, len, prot);\n}\n"
    )
    (fn,) = ir.functions
    assert fn.name == "sys_mprotect"
    assert [p.name for p in fn.params] == ["start", "len", "prot"]
    assert fn.loc.line == 1


def test_export_symbol_and_attributes() -> None:
    ir = lower(
        "noinline int __must_check __weak f(struct page *page) __releases(&p->lock)\n"
        "{\n\treturn 0;\n}\nEXPORT_SYMBOL_GPL(f);\n"
        "static __always_inline void g(void) { f(0); }\n"
    )
    assert [f.name for f in ir.functions] == ["f", "g"]
    assert ir.exports == frozenset({"f"})
    assert ir.functions[0].annotations == (("__releases", "&p->lock"),)
    assert ir.functions[1].static


def test_asm_goto_reaches_its_labels() -> None:
    fn = only(
        "int f(void) {\n"
        '\tasm goto("jmp %l[out]" : : : : out);\n'
        "\tnormal();\n"
        "\treturn 0;\nout:\n\terror_path();\n\treturn 1;\n}\n"
    )
    assert not on_every_path(fn, call_node(fn, "normal"))
    assert not on_every_path(fn, call_node(fn, "error_path"))


def test_statement_expression_is_lowered_in_order() -> None:
    fn = only("int f(void) {\n\tint x = ({ int y = a(); b(y); });\n\treturn c(x);\n}\n")
    assert callees(fn) == ["a", "b", "c"]


def test_do_while_zero_has_no_back_edge() -> None:
    fn = only("void f(void) {\n\tdo {\n\t\tonce();\n\t} while (0);\n\tnext();\n}\n")
    n = call_node(fn, "once")
    assert on_every_path(fn, n)
    assert n not in reachable(fn.cfg, next(m for m, _ in fn.cfg.succs[n]))


def test_ifdef_inside_call_arguments_keeps_the_function_whole() -> None:
    ir = lower(
        'void f(void) {\n\tprintk("a"\n#ifdef CONFIG_X\n\t\t"b"\n#endif\n\t\t, 1);\n}\n'
        "void g(void) { h(); }\n"
    )
    assert [f.name for f in ir.functions] == ["f", "g"]


def test_ifdef_branches_are_alternatives() -> None:
    fn = only("void f(void) {\n#ifdef CONFIG_A\n\ta();\n#else\n\tb();\n#endif\n\tc();\n}\n")
    assert not on_every_path(fn, call_node(fn, "a"))
    assert not on_every_path(fn, call_node(fn, "b"))
    assert on_every_path(fn, call_node(fn, "c"))


def test_assignments_to_fields_and_array_elements() -> None:
    fn = only(
        "void f(struct dio *dio, struct page *page, int i) {\n"
        "\tdio->pages[i] = page;\n\tdio->cur_page = page;\n}\n"
    )
    assigns = [ins for ins in fn.cfg.instrs if ins.kind is Kind.ASSIGN]
    assert [render(a.lhs) for a in assigns if a.lhs] == ["dio->pages[i]", "dio->cur_page"]
    assert isinstance(assigns[0].lhs, Index) and isinstance(assigns[0].lhs.base, Field)
    assert assigns[1].rhs == Name("page")
    assert fn.locals["dio"].struct == "dio" and fn.locals["dio"].ptr == 1


def test_assignment_inside_a_condition_comes_first() -> None:
    fn = only(
        "void f(void) {\n\tstruct page *p;\n\tif ((p = follow_page(v, a, 0)) != 0)\n"
        "\t\tget_page(p);\n}\n"
    )
    kinds = [ins.kind for ins in fn.cfg.instrs[2:]]
    assert kinds[:2] == [Kind.ASSIGN, Kind.BRANCH]


# ---------------------------------------------------------------- CFG shapes
def test_goto_error_path() -> None:
    fn = only(
        "int f(void) {\n\tint err = setup();\n\tif (err)\n\t\tgoto out;\n"
        "\twork();\n\treturn 0;\nout:\n\tcleanup();\n\treturn err;\n}\n"
    )
    work, cleanup = call_node(fn, "work"), call_node(fn, "cleanup")
    assert cleanup not in reachable(fn.cfg, work)
    assert not on_every_path(fn, work) and not on_every_path(fn, cleanup)
    assert on_every_path(fn, call_node(fn, "setup"))


def test_early_return_and_branches() -> None:
    fn = only(
        "int f(int x) {\n\tif (x)\n\t\treturn a();\n\telse\n\t\tb();\n\tc();\n\treturn 0;\n}\n"
    )
    a, c = call_node(fn, "a"), call_node(fn, "c")
    assert c not in reachable(fn.cfg, a)
    branch = next(n for n, ins in enumerate(fn.cfg.instrs) if ins.kind is Kind.BRANCH)
    assert {pol for _m, pol in fn.cfg.succs[branch]} == {True, False}


def test_loops_break_continue_and_switch() -> None:
    fn = only(
        "void f(int n) {\n\tint i;\n\tfor (i = 0; i < n; i++) {\n\t\tif (skip(i))\n"
        "\t\t\tcontinue;\n\t\tif (stop(i))\n\t\t\tbreak;\n\t\tbody(i);\n\t}\n"
        "\tswitch (n) {\n\tcase 1:\n\t\tone();\n\t\tbreak;\n\tdefault:\n\t\tother();\n\t}\n"
        "\tend();\n}\n"
    )
    body = call_node(fn, "body")
    assert call_node(fn, "skip") in reachable(fn.cfg, body)  # back edge
    assert on_every_path(fn, call_node(fn, "end"))
    one, other = call_node(fn, "one"), call_node(fn, "other")
    assert other not in reachable(fn.cfg, one) and not on_every_path(fn, one)


def test_noreturn_calls_end_the_path() -> None:
    fn = only("void f(int x) {\n\tif (x)\n\t\tBUG();\n\tnever_after_bug();\n}\n")
    bug = call_node(fn, "BUG")
    assert call_node(fn, "never_after_bug") not in reachable(fn.cfg, bug)


def test_indirect_call_through_a_field() -> None:
    fn = only("int f(struct vm_fault *vmf) {\n\treturn vmf->vma->vm_ops->fault(vmf);\n}\n")
    (_n, call) = fn.calls()[0]
    assert isinstance(call, Call) and call.indirect and call.callee == "fault"


def test_deep_nesting_is_skipped_not_crashed() -> None:
    depth = 3000
    src = (
        "int f(void) { return "
        + "(" * depth
        + "1"
        + ")" * depth
        + "; }\nint g(void) { return 0; }\n"
    )
    ir = lower(src)
    assert "g" in [f.name for f in ir.functions]
    assert [s.name for s in ir.skipped] in (["f"], [])


def test_macro_headed_function_is_lowered() -> None:
    ir = lower("DEFINE_INTERRUPT_HANDLER_ASYNC(doorbell_exception)\n{\n\tirq_enter();\n}\n")
    (fn,) = ir.functions
    assert fn.name == "doorbell_exception" and fn.status is Status.RECOVERED
    assert callees(fn) == ["irq_enter"]


def test_calls_and_accesses_come_back_packed_and_are_unpacked_on_first_use() -> None:
    ir = lower("void f(struct ops *o, int x)\n{\n\tg(x);\n\to->run(x, h(o->n));\n}\n")
    (fn,) = pickle.loads(pickle.dumps(ir, pickle.HIGHEST_PROTOCOL)).functions
    assert fn.callees == ("g", "h", "run") and fn._call_refs is None
    assert fn._accesses is None and fn.accesses == {("ops", ("n",)), ("ops", ("run",))}
    assert pack_accesses(sorted(fn.accesses)) == pack_accesses(reversed(sorted(fn.accesses)))
    assert fn.call_refs == ir.functions[0].call_refs
    assert [(r.callee, r.indirect, r.line, r.index) for r in fn.call_refs] == [
        ("g", False, 3, 0),
        ("h", False, 4, 0),
        ("run", True, 4, 1),
    ]
    assert [c.callee for _n, c in fn.calls()] == ["g", "h", "run"]


def test_ir_survives_pickling() -> None:
    """The fact store and the worker processes move IR as pickles."""
    src = (FIXTURES / "models" / "v3.1" / "fs" / "direct-io.c").read_bytes()
    ir = parse_bytes(src, "fs/direct-io.c")
    back = pickle.loads(pickle.dumps(ir, pickle.HIGHEST_PROTOCOL))
    # Bodies come back pickled, and are read on first use.
    assert back.functions and not any(fn.body_loaded for fn in back.functions)
    assert back.functions[0].cfg.instrs and back.functions[0].body_loaded
    for fn in back.functions:
        assert fn.locals == fn.body.locals
    assert back == ir
    assert [render(c) for _n, c in back.functions[-1].calls()] == [
        render(c) for _n, c in ir.functions[-1].calls()
    ]
