"""The command line: exit codes, bad input, output formats, rule docs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyzer import cli, engine
from analyzer.cli import main
from tests.fixture_markers import FIXTURES

V31 = FIXTURES / "models" / "v3.1"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_findings_exit_1_with_gcc_lines_and_json(tmp_path: Path) -> None:
    out = tmp_path / "r" / "scan.json"
    code, stdout, _ = run("scan", str(V31), "--json", str(out))
    assert code == 1
    first = stdout.splitlines()[0]
    assert first.startswith("fs/direct-io.c:") and first.endswith("[tail-ref-race]")
    assert ": warning: " in first
    assert "  fs/direct-io.c:27:8: note: get_user_pages_fast() stores" in stdout
    doc = json.loads(out.read_text())
    assert doc["tool"]["name"] == "krefaudit"
    assert doc["refcount_model"]["name"] == "split-tail"
    assert doc["refcount_model"]["evidence"][0]["path"] == "include/linux/mm.h"
    f = doc["findings"][0]
    assert {
        "rule_id",
        "severity",
        "confidence",
        "path",
        "line",
        "column",
        "function",
        "message",
        "fingerprint",
        "trace",
    } <= f.keys()
    assert f["path"] == "fs/direct-io.c" and f["trace"][0]["note"].startswith("get_user_pages")
    assert doc["coverage"]["totals"]["functions_seen"] > 0
    assert not list(out.parent.glob(".scan.json.*")), "no temporary file left behind"


def test_clean_tree_exits_0_and_says_why() -> None:
    code, stdout, _ = run("scan", str(FIXTURES / "models" / "v6.1"))
    assert code == 0
    assert "not applicable: refcount model folio" in stdout


def test_json_is_deterministic() -> None:
    a = run("scan", str(V31), "--format", "json", "--no-cache")[1]
    b = run("scan", str(V31), "--format", "json", "--no-cache")[1]
    assert a == b and json.loads(a)["findings"]


def test_refcount_model_override() -> None:
    code, stdout, _ = run("scan", str(V31), "--refcount-model", "locked-tail")
    assert "set with --refcount-model" in stdout
    # Under a self-serializing get_page only get_page_foll() stays a finding.
    assert all("get_page_foll()" in line for line in stdout.splitlines() if ": warning:" in line)


def test_missing_tree_is_an_input_error(tmp_path: Path) -> None:
    code, _, stderr = run("scan", str(tmp_path / "nope"))
    assert code == 2
    assert "nope" in stderr and "not a directory" in stderr


def test_bad_files_are_named_and_the_rest_is_analyzed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "include").mkdir(parents=True)
    for name in ("kstubs.h",):
        (tree / "include" / name).write_bytes((FIXTURES / "include" / name).read_bytes())
    good = (FIXTURES / "tail-ref-race" / "bad_dio_chain.c").read_bytes()
    (tree / "good.c").write_bytes(good)
    (tree / "nul.c").write_bytes(b"int f(void)\n{\n\treturn 0;\0\n}\n")
    (tree / "latin1.c").write_bytes(b"/* Copyright \xe9 */\nint g(void) { return 1; }\n")
    (tree / "empty.c").write_bytes(b"")
    (tree / "notes.txt").write_text("not C\n")
    code, stdout, stderr = run(
        "scan", str(tree), "good.c", "nul.c", "latin1.c", "empty.c", "notes.txt", "missing.c"
    )
    assert code == 2
    assert "nul.c:3: NUL byte in source" in stderr
    assert "notes.txt: not a C source file" in stderr
    assert "missing.c: no such file" in stderr
    # The good file is still analyzed and reported; the Latin-1 file is parsed.
    assert stdout.count("[tail-ref-race]") == 2
    assert "not parsed: nul.c:3" in stdout
    code, stdout, _ = run("coverage", str(tree), "latin1.c", "empty.c", "--format", "json")
    doc = json.loads(stdout)
    assert code == 0
    assert [(f["path"], f["functions_seen"]) for f in doc["files"]] == [
        ("empty.c", 0),
        ("latin1.c", 1),
    ]


def test_callgraph_json_has_lock_context() -> None:
    code, stdout, _ = run("callgraph", str(V31), "mm", "--format", "json")
    assert code == 0
    edges = json.loads(stdout)["edges"]
    assert edges and all({"caller", "callee", "path", "line", "held"} <= e.keys() for e in edges)


def test_callgraph_from_the_store(tmp_path: Path) -> None:
    """The second run's IR comes from the store, bodies included, with no warning."""
    args = ("callgraph", str(V31), "--format", "json", "--cache", str(tmp_path / "c"))
    first, second = run(*args), run(*args)
    assert first == second and first[0] == 0 and first[2] == ""


def test_only_the_html_report_asks_for_the_trace_functions_lock_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock state of each line of the functions in traces is drawn by the HTML report
    alone: a scan writing text, JSON and SARIF does not compute it."""
    computed: list[int] = []
    facts = engine.function_facts

    def counted(*args: Any) -> Any:
        found = facts(*args)
        computed.append(len(found))
        return found

    monkeypatch.setattr(engine, "function_facts", counted)
    outputs = ("--json", str(tmp_path / "r.json"), "--sarif", str(tmp_path / "r.sarif"))
    assert run("scan", str(V31), "--no-cache", *outputs)[0] == 1
    assert computed == []
    assert run("scan", str(V31), "--no-cache", "--html", str(tmp_path / "h"))[0] == 1
    assert len(computed) == 1 and computed[0] > 0
    assert list((tmp_path / "h").glob("**/fn-*.html"))


def test_rules_show_prints_the_documentation() -> None:
    code, stdout, _ = run("rules", "show", "tail-ref-race")
    assert code == 0
    for title in ("What it does", "Why it is bad", "Example", "Instead", "References"):
        assert title in stdout
    assert run("rules", "show", "no-such-rule")[0] == 2


def test_version_and_help() -> None:
    code, stdout, _ = run("--version")
    assert code == 0 and "krefaudit" in stdout
    code, stdout, _ = run("--help")
    assert code == 0 and "Exit codes" in stdout


def test_output_does_not_depend_on_jobs() -> None:
    one = run("scan", str(FIXTURES), "tail-ref-race", "-j", "1", "--format", "json", "--no-cache")
    two = run("scan", str(FIXTURES), "tail-ref-race", "-j", "2", "--format", "json", "--no-cache")
    assert one == two and one[0] == 1


def test_reports_get_the_umask_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run("scan", str(V31), "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "h"))
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "h").stat().st_mode & 0o777 == 0o755


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@pytest.mark.parametrize(
    ("args", "code"),
    [(["scan", str(V31), "-j", "1", "--no-cache"], 1), (["scan", "/nonexistent"], 2), (["-h"], 0)],
)
def test_the_console_script_exits_without_freeing_the_scan(
    monkeypatch: pytest.MonkeyPatch, args: list[str], code: int
) -> None:
    """entry() keeps what the scan built until os._exit(), with main()'s exit code. (In
    one process: a forked worker would run the patched os._exit too.)"""

    def exit_now(status: int) -> None:
        raise _Exited(status)

    monkeypatch.setattr(os, "_exit", exit_now)
    monkeypatch.setattr(sys, "argv", ["krefaudit", *args])
    monkeypatch.setattr(cli, "_retained", None)
    with pytest.raises(_Exited) as exited:
        cli.entry()
    assert exited.value.code == code
    kept = cli._retained
    assert kept is not None and len(kept) == (1 if code == 1 else 0)
    if kept:
        assert isinstance(kept[0], engine.Parsed) and kept[0].files


def test_the_console_script_flushes_what_it_wrote(tmp_path: Path) -> None:
    """Through a pipe, all that was written arrives: the exit that frees nothing loses
    nothing."""
    cmd = [sys.executable, "-m", "analyzer", "scan", str(V31), "--no-cache", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stdout == run("scan", str(V31), "--no-cache", "--format", "json")[1]
    assert json.loads(done.stdout)["findings"]
