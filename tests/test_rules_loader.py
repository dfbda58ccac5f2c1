"""Rule files are data checked against a schema; errors name the file and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from analyzer.engine import parse_paths
from analyzer.rules.loader import RuleError, load_api, load_rule, load_rules, rules_dir

GOOD = (rules_dir() / "tail-ref-race.yaml").read_text()


def write(tmp_path: Path, text: str, name: str = "tail-ref-race.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_rules_and_api_load() -> None:
    rules = {r.id: r for r in load_rules()}
    assert sorted(rules) == ["gup-leak", "gup-over-release", "pin-put-mismatch", "tail-ref-race"]
    assert "get_page" in rules["tail-ref-race"].sinks
    assert rules["gup-leak"].event == "leak"
    assert "unsigned" in rules["gup-over-release"].message_for("negative")
    api = load_api()
    assert api.locks.functions["pte_offset_map_lock"][0].acquire == ("out", 3)
    assert "get_user_pages_fast" in api.gup.array
    assert api.refs.default_model in api.refs.models
    assert api.release.release["unpin_user_pages"].family == "unpin"
    assert api.release.borrows("PageDirty") and not api.release.borrows("bio_add_page")


def test_bad_release_table_names_file_and_line(tmp_path: Path) -> None:
    api = tmp_path / "api"
    api.mkdir()
    for f in (rules_dir() / "api").glob("*.yaml"):
        (api / f.name).write_text(f.read_text())
    text = (api / "release.yaml").read_text()
    line = text.splitlines().index("  put_page: {page: 0, family: put}") + 1
    (api / "release.yaml").write_text(text.replace("family: put}", "family: drop}", 1))
    with pytest.raises(RuleError) as e:
        load_api(tmp_path)
    assert str(e.value).startswith(f"{api / 'release.yaml'}:{line}: "), str(e.value)
    assert "family" in str(e.value)


@pytest.mark.parametrize(
    ("edit", "line", "what"),
    [
        (("severity: warning", "severity: loud"), 3, "'severity' must be"),
        (("guards: [pt, compound, irq]", "guards: [pt, mutex]"), 8, "'guards' must be among"),
        (("confidence: high", "confidence: high\ncolour: red"), 5, "unknown field 'colour'"),
        (("id: tail-ref-race", "id: other-name"), 1, "match the file name"),
        (("sinks: [", "sinks: [[["), 8, "not valid YAML"),  # reported where YAML sees it
        (("analysis: reference-race", "analysis: magic"), 5, "'analysis' must be one of"),
        (("confidence: high", "confidence: high\nevent: leak"), 5, "unknown field 'event'"),
    ],
)
def test_bad_fields_name_file_and_line(
    tmp_path: Path, edit: tuple[str, str], line: int, what: str
) -> None:
    p = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(RuleError) as e:
        load_rule(p)
    assert str(e.value).startswith(f"{p}:{line}: "), str(e.value)
    assert what in str(e.value)


def test_missing_field(tmp_path: Path) -> None:
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith("message:"))
    with pytest.raises(RuleError, match="missing field 'message'"):
        load_rule(write(tmp_path, text))


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("name: ", "name: !!python/object/apply:os.system ['true']\n#"))
    with pytest.raises(RuleError):
        load_rule(p)


@pytest.mark.parametrize(
    ("text", "lowered"),
    [
        ("int f(int nr_pages)\n{\n\treturn nr_pages; /* one page */\n}\n", False),
        ("void f(struct page *p)\n{\n\tkmap(p);\n}\n", True),
        ("void f(void *p)\n{\n\tget_page(p);\n}\n", True),
        ("void f(struct mm_struct *mm)\n{\n\tspin_lock(&mm->page_table_lock);\n}\n", True),
        ("void f(spinlock_t *ptl)\n{\n\tspin_lock(ptl);\n}\n", True),
        ("void f(struct folio *folio)\n{\n}\n", True),
        ("struct fec_buf {\n\tstruct\tpage *page;\n};\n", True),
        ("void f(struct\n\t    page *p)\n{\n}\n", True),
    ],
)
def test_prefilter_lowers_what_can_hold_or_lock_a_page(
    tmp_path: Path, text: str, lowered: bool
) -> None:
    """`page` alone (nr_pages, comments) does not make a file relevant; a struct page
    declaration, a tracked primitive, a page-table lock or a folio does."""
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "f.c").write_text(text)
    parsed = parse_paths(tmp_path, ["mm"], lower_all=False)
    assert [f.path for f in parsed.files] == (["mm/f.c"] if lowered else [])
    assert parsed.coverage.unneeded == (() if lowered else ("mm/f.c",))


def test_anchors_change_no_answer_of_the_prefilter() -> None:
    """Grouping the tokens under anchors only skips searches: each token, alone in a
    file, is found with the shipped anchors as without any, and a file without tokens
    is not."""
    api = load_api()
    grouped = api.relevance(load_rules())
    flat = dataclasses.replace(api, anchors=()).relevance(load_rules())
    assert len(grouped.groups) < len(flat.groups)
    tokens = [t for _a, literal, _s in flat.groups for t in literal]
    assert len(tokens) > 20
    filler = b"int nr_pages; /* the ptes */ spin_lock(&ptlock_head);\n"
    for token in [*tokens, b"struct \t page"]:
        assert grouped(filler + token + b"(x);\n") and flat(filler + token + b"(x);\n"), token
    assert not grouped(filler.replace(b"ptl", b"xyz")) and not flat(filler.replace(b"ptl", b"xyz"))
