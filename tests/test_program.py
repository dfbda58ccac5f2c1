"""Call-graph resolution across files: statics per file, globals, function pointers."""

from __future__ import annotations

from pathlib import Path

from analyzer import engine
from analyzer.engine import parse_paths
from analyzer.program.model import Program
from analyzer.program.tree import DefinitionIndex, definition_files, discover
from analyzer.report.callgraph import edges, render_dot
from analyzer.report.json_report import render_json
from analyzer.rules.loader import load_api
from tests.fixture_markers import FIXTURES


def program(tmp_path: Path, files: dict[str, str]) -> Program:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    parsed = parse_paths(tmp_path, sorted(files))
    assert not parsed.diagnostics
    return Program(parsed.files)


def targets(p: Program, caller_key: str) -> dict[str, list[str]]:
    fn = p.by_key[caller_key]
    return {s.call.callee or "?": sorted(t.key for t in ts) for s, ts in p.callees(fn)}


def test_static_functions_resolve_within_their_file(tmp_path: Path) -> None:
    p = program(
        tmp_path,
        {
            "a.c": "static int helper(void) { return 1; }\n"
            "int a_entry(void) { return helper(); }\n",
            "b.c": "static int helper(void) { return 2; }\n"
            "int b_entry(void) { return helper(); }\n",
            "c.c": "int helper2(void);\nint c_entry(void) { return helper2() + a_entry(); }\n",
            "d.c": "int helper2(void) { return 3; }\n",
        },
    )
    assert targets(p, "a.c:a_entry") == {"helper": ["a.c:helper"]}
    assert targets(p, "b.c:b_entry") == {"helper": ["b.c:helper"]}
    assert targets(p, "c.c:c_entry") == {"helper2": ["d.c:helper2"], "a_entry": ["a.c:a_entry"]}
    assert [s.caller.key for s in p.callers(p.by_key["a.c:helper"])] == ["a.c:a_entry"]


def test_function_pointers_from_initializers_and_assignments(tmp_path: Path) -> None:
    p = program(
        tmp_path,
        {
            "ops.c": (
                "static int my_fault(struct vm_fault *vmf) { return 0; }\n"
                "static int my_open(struct vm_area_struct *vma) { return 0; }\n"
                "static const struct vm_operations_struct my_ops = {\n"
                "\t.fault = my_fault,\n\t.open = &my_open,\n};\n"
                "void setup(struct foo *f) { f->release = my_release; }\n"
            ),
            "rel.c": "int my_release(struct foo *f) { return 0; }\n",
            "mem.c": (
                "int handle(struct vm_fault *vmf) {\n"
                "\tvmf->vma->vm_ops->open(vmf->vma);\n"
                "\treturn vmf->vma->vm_ops->fault(vmf);\n}\n"
                "void drop(struct foo *f) { f->release(f); }\n"
            ),
        },
    )
    assert targets(p, "mem.c:handle") == {"open": ["ops.c:my_open"], "fault": ["ops.c:my_fault"]}
    assert targets(p, "mem.c:drop") == {"release": ["rel.c:my_release"]}
    assert p.may_have_unknown_callers(p.by_key["ops.c:my_fault"])  # address taken
    dot = render_dot(edges(p, None))
    assert '"mem.c:handle" -> "ops.c:my_fault"' in dot and "style=dashed" in dot


def test_exported_and_uncalled_globals_have_unknown_callers(tmp_path: Path) -> None:
    p = program(
        tmp_path,
        {
            "x.c": (
                "static void s(void) { }\nvoid g(void) { s(); }\nvoid e(void) { }\n"
                "EXPORT_SYMBOL(e);\nvoid called(void) { }\nvoid k(void) { called(); }\n"
            ),
        },
    )
    unknown = {k: p.may_have_unknown_callers(fn) for k, fn in p.by_key.items()}
    assert unknown == {
        "x.c:s": False,
        "x.c:g": True,
        "x.c:e": True,
        "x.c:called": False,
        "x.c:k": True,
    }


def test_the_definition_search_finds_macros_prototypes_and_definitions_only(
    tmp_path: Path,
) -> None:
    """What the context search may parse: a #define of the name, or the name followed by
    a parenthesized list and then `;` or `{`, as in a prototype or a definition (a call
    looks alike: h.h is kept, parsing sorts it out); not a mention, a longer name or a
    field. A name that holds another (get_user_pages_fast) is still found alone."""
    headers = {
        "include/linux/a.h": "#define get_page(p) folio_get(page_folio(p))\n",
        "include/linux/b.h": "  #  define\tput_page __put_page\n",
        "include/linux/c.h": "/* get_user_pages is documented elsewhere */\n"
        "long get_user_pages(unsigned long start,\n\t\t    unsigned long nr_pages);\n",
        "include/linux/d.h": "int get_user_pages_fast(unsigned long start, int nr);\n",
        "include/linux/e.h": "#define pin_user_pages_max 8\nint xpin_user_pages(int);\n",
        "include/asm-generic/f.h": "static inline void\npin_user_pages (int nr)\n{\n}\n",
        "include/linux/g.h": "/* see pin_user_pages */\nstruct s { int pin_user_pages; };\n",
        "include/linux/h.h": "static int pin_one(int p) { return pin_user_pages(p); }\n",
    }
    for rel, text in headers.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    files = definition_files(tmp_path)
    assert files[0] == "include/linux/a.h" and files[-1] == "include/asm-generic/f.h"
    index = DefinitionIndex(tmp_path, files)
    assert index.files_defining({"get_page"}) == ["include/linux/a.h"]
    assert index.files_defining({"put_page", "get_user_pages"}) == [
        "include/linux/b.h",
        "include/linux/c.h",
    ]
    assert index.files_defining({"get_user_pages_fast"}) == ["include/linux/d.h"]
    assert index.files_defining({"get_user_pages", "get_user_pages_fast"}) == [
        "include/linux/c.h",
        "include/linux/d.h",
    ]
    assert index.files_defining({"pin_user_pages"}) == [
        "include/linux/h.h",
        "include/asm-generic/f.h",
    ]
    assert index.files_defining({"folio_put"}) == []


def test_calling_finds_direct_calls_by_name_and_by_macro_alias_in_program_order(
    tmp_path: Path,
) -> None:
    files = {
        "include/linux/pagemap.h": "#define page_cache_get(page) get_page(page)\n"
        "static inline void hdr_ref(struct page *p) { get_page(p); }\n",
        "mm/b.c": "void b_alias(struct page *p) { page_cache_get(p); }\n"
        "void b_none(struct page *p) { put_page(p); }\n",
        "mm/a.c": "void a_field(struct ops *o, struct page *p) { o->get_page(p); }\n"
        "void a_direct(struct page *p) { if (p) get_page(p); }\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    scanned = parse_paths(tmp_path, ["mm"]).files
    context = parse_paths(tmp_path, ["include"]).files
    p = Program(scanned, context)
    assert p.canonical("page_cache_get") == "get_page"
    assert [fn.key for fn in p.calling({"get_page"})] == ["mm/a.c:a_direct", "mm/b.c:b_alias"]
    assert [fn.key for fn in p.calling({"put_page", "get_page"})] == [
        "mm/a.c:a_direct",
        "mm/b.c:b_alias",
        "mm/b.c:b_none",
    ]
    assert p.calling({"unpin_user_page"}) == []


def test_a_parallel_run_lowers_the_context_with_the_scanned_files() -> None:
    """With worker processes, the headers the context's first look-up can choose are
    lowered by them, alongside the scanned files; the context and the findings are those
    of a run in one process."""
    tree = FIXTURES / "models" / "v3.1"
    discovery = discover(tree, list(engine.DEFAULT_PATHS))
    index = DefinitionIndex(tree, definition_files(tree))
    api = load_api()
    parsed = engine._parse(
        tree, discovery, None, 2, None, False, lambda: engine._prefetch(index, api, discovery)
    )
    assert list(parsed.prefetched) == ["include/linux/mm.h"]
    context = engine.load_context(tree, parsed, api, None, index)
    assert context == [parsed.prefetched["include/linux/mm.h"]]
    assert render_json(engine.scan(tree, jobs=2)) == render_json(engine.scan(tree, jobs=1))
