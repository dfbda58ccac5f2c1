"""Baselines, suppressions and --ignore; fingerprints that survive line shifts."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli import main
from analyzer.engine import scan
from tests.fixture_markers import FIXTURES


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "models" / "v3.1", tree)
    return tree


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_fingerprints_survive_unrelated_edits_above(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    before = {f.fingerprint: f.location.line for f in scan(tree).findings}
    dio = tree / "fs" / "direct-io.c"
    text = dio.read_text()
    # Lines added above every finding, and whitespace changed inside one reference line.
    text = text.replace("#define DIO_PAGES", "/* a new comment */\n\n\n#define DIO_PAGES", 1)
    text = text.replace("page_cache_get(page);", "page_cache_get( page );", 1)
    dio.write_text(text)
    after = {f.fingerprint: f.location.line for f in scan(tree).findings}
    assert after.keys() == before.keys()
    moved = [fp for fp in after if fp in before and after[fp] != before[fp]]
    assert moved, "the edit should have moved the direct-io findings"


def test_baseline_reports_only_new_findings(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    base = tmp_path / "baseline.txt"
    assert run("baseline", "create", str(tree), "-o", str(base))[0] == 0
    lines = base.read_text().splitlines()
    assert lines[0].startswith("#") and lines[1:] == sorted(lines[1:]) and len(lines) > 1
    assert run("baseline", "create", str(tree), "-o", str(base))[0] == 2  # will not overwrite
    code, stdout, _ = run("scan", str(tree), "--baseline", str(base))
    assert code == 0 and "[tail-ref-race]" not in stdout
    assert "left out by the baseline" in stdout
    # A new unguarded reference is reported on its own.
    follow = tree / "mm" / "follow_ref.c"
    follow.write_text(
        follow.read_text()
        + "\nstatic void added_later(struct vm_area_struct *vma, unsigned long a)\n{\n"
        "\tstruct page *p = follow_page(vma, a, 0);\n\tget_page(p);\n}\n"
        "void added_later_entry(struct vm_area_struct *v) { added_later(v, 0); }\n"
    )
    code, stdout, _ = run("scan", str(tree), "--baseline", str(base))
    assert code == 1
    assert [ln.split(":")[0] for ln in stdout.splitlines() if ": warning:" in ln] == [
        "mm/follow_ref.c"
    ]
    code, stdout, _ = run("baseline", "update", str(tree), "-o", str(base))
    assert code == 0 and "1 added, 0 dropped" in stdout


def test_suppressions_need_a_reason(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    findings = scan(tree).findings
    supp = tmp_path / "supp.yaml"
    supp.write_text(
        f"- fingerprint: {findings[0].fingerprint}\n  reason: audited, the page is pinned\n"
        f"- rule: tail-ref-race\n  function: {findings[-1].function}\n  reason: known\n"
    )
    code, stdout, _ = run("scan", str(tree), "--suppressions", str(supp))
    assert "2 finding(s) left out by the baseline, suppressions or --ignore" in stdout
    assert stdout.count(": warning:") == len(findings) - 2
    supp.write_text("- rule: tail-ref-race\n  function: x\n  reason: ok\n\n- fingerprint: v1:abc\n")
    code, _, stderr = run("scan", str(tree), "--suppressions", str(supp))
    assert code == 2 and f"{supp}:5: a suppression needs a reason" in stderr


def test_ignore_rule(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    code, stdout, _ = run("scan", str(tree), "--ignore", "tail-ref-race")
    assert code == 0 and ": warning:" not in stdout
    assert run("scan", str(tree), "--ignore", "no-such-rule")[0] == 2
