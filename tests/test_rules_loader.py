"""Rule files are data checked against a schema; errors name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.rules.loader import RuleError, load_api, load_rule, load_rules, rules_dir

GOOD = (rules_dir() / "tail-ref-race.yaml").read_text()


def write(tmp_path: Path, text: str, name: str = "tail-ref-race.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_rules_and_api_load() -> None:
    (rule,) = load_rules()
    assert rule.id == "tail-ref-race" and "get_page" in rule.sinks
    api = load_api()
    assert api.locks.functions["pte_offset_map_lock"][0].acquire == ("out", 3)
    assert "get_user_pages_fast" in api.gup.array
    assert api.refs.default_model in api.refs.models


@pytest.mark.parametrize(
    ("edit", "line", "what"),
    [
        (("severity: warning", "severity: loud"), 3, "'severity' must be"),
        (("guards: [pt, compound, irq]", "guards: [pt, mutex]"), 7, "'guards' must be among"),
        (("confidence: high", "confidence: high\ncolour: red"), 5, "unknown field 'colour'"),
        (("id: tail-ref-race", "id: other-name"), 1, "match the file name"),
        (("sinks: [", "sinks: [[["), 7, "not valid YAML"),  # reported where YAML sees it
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
