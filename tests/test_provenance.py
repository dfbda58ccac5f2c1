"""Page provenance across functions through struct fields: who is woken when a fact
about a field appears."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.dataflow.provenance import Provenance, expr_type
from analyzer.engine import parse_paths
from analyzer.ir import Field, subexpressions, type_name
from analyzer.program.model import Program
from analyzer.rules.loader import load_api, load_rules

SOURCE = """\
struct page;
struct dio { struct page **pages; };
struct pipe { struct page **pages; };
int get_user_pages_fast(unsigned long start, int nr, int write, struct page **pages);
void get_page(struct page *page);

void fill(struct dio *d, unsigned long addr)
{
	get_user_pages_fast(addr, 1, 0, d->pages);
}

void take_dio(struct dio *d)
{
	get_page(d->pages[0]);
}

void take_pipe(struct pipe *p)
{
	get_page(p->pages[0]);
}

void take_unknown(void *x)
{
	get_page(((struct unknown *)x)->pages[0]);
}
"""


def test_a_field_fact_wakes_only_readers_of_that_struct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dio.c").write_text(SOURCE)
    program = Program(parse_paths(tmp_path, ["dio.c"]).files)
    api = load_api()
    (rule,) = [r for r in load_rules() if r.id == "tail-ref-race"]
    analyzed: list[str] = []
    real = Provenance._analyze
    monkeypatch.setattr(
        Provenance, "_analyze", lambda self, fn: (analyzed.append(fn.name), real(self, fn))[1]
    )
    prov = Provenance(program, api.gup, {s: api.refs.reference[s] for s in rule.sinks})
    sites = prov.run()
    # fill() stores into struct dio's pages[]: take_dio() reads them back and is woken
    # (so is fill(), which uses the field too). take_pipe() uses a field of the same name
    # in another struct, and take_unknown() one of a struct whose type is unknown:
    # neither can read the fact, and neither is analyzed (no GUP call of their own).
    assert sorted(set(analyzed)) == ["fill", "take_dio"]
    assert [(s.function.name, s.sink) for s in sites] == [("take_dio", "get_page")]
    assert [step.note for step in sites[0].origin.steps] == [
        "get_user_pages_fast() stores referenced user pages in d->pages",
        "stored into d->pages[]",
        "page read back from d->pages[0]",
    ]


def test_field_accesses_from_the_skeleton_match_the_body() -> None:
    """Provenance reads which struct each field access is of from Function.accesses,
    without the body; over every fixture, that must be what expr_type() says of each
    Field's base in the body."""
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    program = Program(parse_paths(fixtures, ["."]).files)
    api = load_api()
    prov = Provenance(program, api.gup, {})
    checked = 0
    for fn in program.functions():
        from_body = {
            (type_name(expr_type(program, fn, e.base)), e.name)
            for ins in fn.cfg.instrs
            for e in subexpressions(ins.lhs, ins.rhs)
            if isinstance(e, Field)
        }
        assert prov._field_accesses(fn) == from_body, fn.key
        checked += len(from_body)
    assert checked > 200
