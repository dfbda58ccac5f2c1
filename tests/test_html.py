"""The HTML audit report: golden pages of the v3.1 model tree, the view model (reference
line, trace steps, lock shading, comparison with a previous result), self-containment,
and escaping of hostile source text and file names.

The golden files under tests/golden/html/ are the spec of the report. After an intended
change of the report, rewrite them and review the diff:

    KREFAUDIT_UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_html.py

The tool version is replaced by "VERSION" in the golden view so that a release does not
rewrite every golden file; source highlighting comes from Pygments (pinned <3 in
pyproject), whose token classes are part of the golden finding page.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyzer import engine
from analyzer.cli import main
from analyzer.model import RunResult
from analyzer.report.html.view import (
    Excerpt,
    FindingView,
    ReportView,
    SourceLine,
    build,
    previous_fingerprints,
)
from analyzer.report.html.writer import render_pages, write_report
from analyzer.report.json_report import render_json

REPO = Path(__file__).resolve().parent.parent
V31_REL = Path("fixtures/models/v3.1")
GOLDEN = Path(__file__).resolve().parent / "golden" / "html"
GENERATED = "2024-01-01 00:00 UTC"
UPDATE = os.environ.get("KREFAUDIT_UPDATE_GOLDEN") == "1"
MAX_DIFF_LINES = 60

HOSTILE_COMMENT = (
    "/* </script><script>window.__pwned=1;alert(1)</script> "
    '<img src=x onerror=alert(2)> & "quotes" */'
)
HOSTILE_NAME = 'wé <"x"> & y.c'


# ---------------------------------------------------------------- shared builders
def scan_in_repo(tree: Path = V31_REL) -> RunResult:
    """Scan `tree` with the repository root as working directory, so that a relative
    `tree` stays relative in the result (and in the golden files)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        return engine.scan(tree)


def build_in_repo(
    result: RunResult, tree: Path = V31_REL, previous: dict[str, dict[str, Any]] | None = None
) -> ReportView:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)  # the view reads the source files relative to the tree as given
        return build(result, tree, GENERATED, previous)


@pytest.fixture(scope="module")
def v31_result() -> RunResult:
    return scan_in_repo()


@pytest.fixture(scope="module")
def v31_view(v31_result: RunResult) -> ReportView:
    return build_in_repo(v31_result)


@pytest.fixture(scope="module")
def v31_pages(v31_view: ReportView) -> dict[str, str]:
    return render_pages(dataclasses.replace(v31_view, tool_version="VERSION"))


def make_hostile_tree(root: Path) -> tuple[Path, bool]:
    """A copy of the v3.1 tree with markup in a comment inside dio_bio_add_page() and,
    if the file system allows it, a copy of mm/follow_ref.c under a hostile name.
    Returns the tree and whether the hostile file name could be created."""
    tree = root / "hostile-tree"
    shutil.copytree(REPO / V31_REL, tree)
    dio = tree / "fs" / "direct-io.c"
    lines = dio.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, s in enumerate(lines) if s.startswith("static int dio_bio_add_page("))
    assert lines[at + 2].strip() == "int ret;"
    lines.insert(at + 3, f"\t{HOSTILE_COMMENT}\n")
    dio.write_text("".join(lines), encoding="utf-8")
    try:
        shutil.copy(tree / "mm" / "follow_ref.c", tree / "mm" / HOSTILE_NAME)
        named = True
    except (OSError, UnicodeEncodeError):
        named = False
    return tree, named


# ---------------------------------------------------------------- golden files
def _line_facts(line: SourceLine) -> str:
    marks = [m for m, on in (("ref", line.is_ref), ("guarded", line.guarded)) if on]
    if line.steps:
        marks.append("steps=" + ",".join(map(str, line.steps)))
    return f"{line.number} held={line.locks or '-'}" + "".join(f" {m}" for m in marks)


def _excerpt_facts(e: Excerpt) -> dict[str, Any]:
    return {
        "path": e.path,
        "function": e.function,
        "function_page": e.function_page,
        "missing": e.missing,
        "lines": [_line_facts(ln) for ln in e.lines],
    }


def _finding_facts(f: FindingView) -> dict[str, Any]:
    d = {k.name: getattr(f, k.name) for k in dataclasses.fields(f)}
    d["steps"] = [
        f"{s.number} {s.path}:{s.line}:{s.column} {s.function}(): {s.note} [held: {s.locks}]"
        f" #{s.anchor}"
        for s in f.steps
    ]
    d["excerpts"] = [_excerpt_facts(e) for e in f.excerpts]
    del d["svg"]  # drawn in the golden finding page
    return d


def view_facts(view: ReportView) -> dict[str, Any]:
    """The view model as plain JSON: every fact the templates read except the
    highlighted source (checked in the golden finding page) and the SVG."""
    d = dataclasses.asdict(dataclasses.replace(view, findings=[], tool_version="VERSION"))
    d["findings"] = [_finding_facts(f) for f in view.findings]
    return d


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} missing: run with KREFAUDIT_UPDATE_GOLDEN=1 to create it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = list(
            difflib.unified_diff(
                expected.splitlines(),
                actual.splitlines(),
                f"golden/html/{name}",
                f"{name} (rendered now)",
                lineterm="",
            )
        )
        shown = "\n".join(diff[:MAX_DIFF_LINES])
        more = (
            f"\n... {len(diff) - MAX_DIFF_LINES} more diff lines"
            if len(diff) > MAX_DIFF_LINES
            else ""
        )
        pytest.fail(
            f"{name} differs from its golden file (KREFAUDIT_UPDATE_GOLDEN=1 rewrites it "
            f"after an intended change):\n{shown}{more}",
            pytrace=False,
        )


def test_golden_index(v31_pages: dict[str, str]) -> None:
    check_golden("index.html", v31_pages["index.html"])


def test_golden_finding_page(v31_pages: dict[str, str]) -> None:
    check_golden("finding-0001.html", v31_pages["finding-0001.html"])


def test_golden_view_model(v31_view: ReportView) -> None:
    text = json.dumps(view_facts(v31_view), indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    check_golden("view.json", text)


def test_golden_files_hold_no_machine_path() -> None:
    for name in ("index.html", "finding-0001.html", "view.json"):
        text = (GOLDEN / name).read_text(encoding="utf-8")
        assert str(REPO) not in text and "/tmp/" not in text, name
        assert GENERATED in text or name == "view.json"


def test_rendering_is_deterministic(v31_result: RunResult, v31_pages: dict[str, str]) -> None:
    again = render_pages(dataclasses.replace(build_in_repo(v31_result), tool_version="VERSION"))
    assert again == v31_pages


# ---------------------------------------------------------------- the view model
def _excerpt(f: FindingView, path: str, function: str) -> Excerpt:
    [e] = [e for e in f.excerpts if (e.path, e.function) == (path, function)]
    return e


def _line(e: Excerpt, number: int) -> SourceLine:
    [ln] = [ln for ln in e.lines if ln.number == number]
    return ln


def test_view_lists_the_five_v31_findings(v31_view: ReportView) -> None:
    got = [(f.id, f.page, f.path, f.line, f.function) for f in v31_view.findings]
    assert got == [
        ("F0001", "finding-0001.html", "fs/direct-io.c", 57, "dio_bio_add_page"),
        ("F0002", "finding-0002.html", "fs/direct-io.c", 75, "submit_page_section"),
        ("F0003", "finding-0003.html", "mm/follow_ref.c", 34, "follow_ref_unlocked"),
        ("F0004", "finding-0004.html", "mm/follow_ref.c", 52, "follow_ref_foll"),
        ("F0005", "finding-0005.html", "mm/thp_paths.c", 154, "thp_driver_pin_first"),
    ]
    assert v31_view.tree == "fixtures/models/v3.1"
    assert v31_view.generated == GENERATED
    assert not v31_view.compared and not v31_view.fixed
    assert {f.status for f in v31_view.findings} == {""}


def test_reference_line_is_marked_once_on_the_findings_line(v31_view: ReportView) -> None:
    for f in v31_view.findings:
        refs = [(e.path, e.function, ln.number) for e in f.excerpts for ln in e.lines if ln.is_ref]
        assert refs == [(f.path, f.function, f.line)], f.id


def test_every_trace_step_is_numbered_on_its_line(v31_view: ReportView) -> None:
    for f in v31_view.findings:
        assert [s.number for s in f.steps] == list(range(1, len(f.steps) + 1))
        for s in f.steps:
            e = _excerpt(f, s.path, s.function)
            assert e.missing is None, (f.id, e.missing)
            assert s.number in _line(e, s.line).steps, (f.id, s)
            assert s.anchor == f"step-{s.number}"
        # each step appears exactly once in the margins, in order on a shared line
        margins = [n for e in f.excerpts for ln in e.lines for n in ln.steps]
        assert sorted(margins) == [s.number for s in f.steps], f.id
        for e in f.excerpts:
            for ln in e.lines:
                assert list(ln.steps) == sorted(ln.steps)


def test_shared_lines_carry_every_step(v31_view: ReportView) -> None:
    f1 = v31_view.findings[0]
    dio_refill = _excerpt(f1, "fs/direct-io.c", "dio_refill_pages")
    assert _line(dio_refill, 27).steps == (1, 2)  # the GUP call and the store into pages[]
    bio_add = _excerpt(f1, "fs/direct-io.c", "dio_bio_add_page")
    assert _line(bio_add, 57).steps == (8, 9) and _line(bio_add, 57).is_ref
    f4 = v31_view.findings[3]
    assert _line(_excerpt(f4, "mm/follow_ref.c", "follow_ref_foll"), 52).steps == (2, 5)


def test_lines_under_the_page_table_lock_are_guarded(v31_view: ReportView) -> None:
    """follow_ref_foll(): pte_offset_map_lock() on line 47, pte_unmap_unlock() on line 50,
    the late get_page_foll() on line 52. A line's locks are those held before its first
    statement: 48-50 are under ptl, the lock call's own line and everything after the
    unlock are not."""
    f = next(f for f in v31_view.findings if f.function == "follow_ref_foll")
    assert f.rule_id == "tail-ref-race" and f.path == "mm/follow_ref.c" and f.line == 52
    e = _excerpt(f, "mm/follow_ref.c", "follow_ref_foll")
    assert (e.lines[0].number, e.lines[-1].number) == (38, 54)  # a short function: whole
    guarded = [ln.number for ln in e.lines if ln.guarded]
    assert guarded == [48, 49, 50]
    for n in (48, 49, 50):
        assert _line(e, n).locks == "pt:ptl"
    ref = _line(e, 52)
    assert ref.is_ref and not ref.guarded and ref.locks == "none"
    assert "pte_offset_map_lock" in _line(e, 47).html and "pte_unmap_unlock" in _line(e, 50).html
    # the caller's excerpt holds nothing either
    run = _excerpt(f, "mm/follow_ref.c", "follow_ref_run")
    assert not any(ln.guarded for ln in run.lines)


def test_unlocked_findings_have_no_guarded_lines(v31_view: ReportView) -> None:
    for f in v31_view.findings:
        if f.function == "follow_ref_foll":
            continue
        assert not [ln.number for e in f.excerpts for ln in e.lines if ln.guarded], f.id


def test_rendered_finding_page_marks_ref_guard_and_steps(v31_pages: dict[str, str]) -> None:
    page = v31_pages["finding-0004.html"]
    rows = Rows.of(page)
    assert rows.classes_of(52) == {"ref", "step"}
    assert {n: rows.classes_of(n) for n in (47, 48, 49, 50, 51)} == {
        47: set(),
        48: {"guard"},
        49: {"guard"},
        50: {"guard", "step"},
        51: set(),
    }
    assert rows.badges_of(52) == ["#trace-2", "#trace-5"]
    assert page.count('<li id="trace-') == 5


# ---------------------------------------------------------------- --compare
def _previous_doc(result: RunResult, drop: int) -> dict[str, Any]:
    doc = json.loads(render_json(result))
    doc["findings"] = [f for i, f in enumerate(doc["findings"]) if i != drop]
    doc["findings"].append(
        {
            "rule_id": "tail-ref-race",
            "severity": "warning",
            "confidence": "high",
            "path": "mm/gone.c",
            "line": 7,
            "column": 2,
            "function": "gone_fn",
            "message": "get_page() on a page that is no longer there",
            "fingerprint": "v1:00000000000000000000000000000000",
            "trace": [],
        }
    )
    return doc


def test_compare_marks_new_unchanged_and_fixed(v31_result: RunResult, tmp_path: Path) -> None:
    prev = tmp_path / "previous.json"
    prev.write_text(json.dumps(_previous_doc(v31_result, drop=2)), encoding="utf-8")
    view = build_in_repo(v31_result, previous=previous_fingerprints(prev))
    assert view.compared
    assert [f.status for f in view.findings] == [
        "unchanged",
        "unchanged",
        "new",
        "unchanged",
        "unchanged",
    ]
    assert [(x.rule_id, x.path, x.line, x.function) for x in view.fixed] == [
        ("tail-ref-race", "mm/gone.c", 7, "gone_fn")
    ]
    pages = render_pages(view)
    index = pages["index.html"]
    assert '<th data-key="status">Status</th>' in index
    assert index.count('<td class="status new">new</td>') == 1
    assert index.count('<td class="status unchanged">unchanged</td>') == 4
    assert 'data-id="F0003"' in index and re.search(r'data-id="F0003"[^>]*data-status="new"', index)
    assert "Fixed since the baseline (1)" in index
    assert "<code>mm/gone.c:7</code>" in index and "<code>gone_fn()</code>" in index
    assert "get_page() on a page that is no longer there" in index
    assert '<dd class="status new">new</dd>' in pages["finding-0003.html"]
    assert '<dd class="status unchanged">unchanged</dd>' in pages["finding-0001.html"]


def test_compare_with_identical_result_fixes_nothing(v31_result: RunResult) -> None:
    doc = json.loads(render_json(v31_result))
    previous = {f["fingerprint"]: f for f in doc["findings"]}
    view = build_in_repo(v31_result, previous=previous)
    assert {f.status for f in view.findings} == {"unchanged"} and view.fixed == []
    assert "Fixed since the baseline (0)" in render_pages(view)["index.html"]


def test_cli_html_with_compare(v31_result: RunResult, tmp_path: Path) -> None:
    prev = tmp_path / "previous.json"
    prev.write_text(json.dumps(_previous_doc(v31_result, drop=0)), encoding="utf-8")
    out = tmp_path / "reports" / "html"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setenv("SOURCE_DATE_EPOCH", "1704067200")  # 2024-01-01 00:00 UTC
        res = CliRunner().invoke(
            main, ["scan", str(V31_REL), "--html", str(out), "--compare", str(prev), "-q"]
        )
    assert res.exit_code == 1, res.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert re.search(r'data-id="F0001"[^>]*data-status="new"', index)
    assert index.count('<td class="status unchanged">unchanged</td>') == 4
    assert "Fixed since the baseline (1)" in index and "mm/gone.c:7" in index
    assert f"generated {GENERATED}" in index
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")], "temp left"


def test_rewriting_a_report_replaces_it_whole(v31_result: RunResult, tmp_path: Path) -> None:
    out = tmp_path / "html"
    out.mkdir()
    (out / "stale.html").write_text("old", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        write_report(v31_result, V31_REL, out, GENERATED)
    names = sorted(p.name for p in out.iterdir())
    assert "stale.html" not in names and "index.html" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["html"]


# ---------------------------------------------------------------- self-contained
class Links(HTMLParser):
    """Every src/href-like attribute, element ids, script and img tags, and on*
    event-handler attributes of one page."""

    URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset", "data"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.xmlns: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in self.URL_ATTRS:
                self.urls.append((tag, name, value or ""))
            elif name == "id" and value:
                self.ids.add(value)
            elif name.startswith("on"):
                self.handlers.append((tag, name))
            elif name == "xmlns":
                self.xmlns.append(value or "")
            elif name == "style":
                self.urls.append((tag, name, value or ""))
        if tag == "script":
            self.scripts.append(dict(attrs))

    handle_startendtag = handle_starttag

    @classmethod
    def of(cls, page: str) -> Links:
        p = cls()
        p.feed(page)
        p.close()
        return p


class Rows(HTMLParser):
    """The source table rows of a finding page: classes and badge links per line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[set[str], list[str]]] = []
        self.numbers: dict[int, int] = {}
        self._in_no = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "class" in a:
            self.rows.append((set((a["class"] or "").split()), []))
        elif tag == "td" and a.get("class") == "no":
            self._in_no = True
        elif tag == "a" and a.get("class") == "badge" and self.rows:
            self.rows[-1][1].append(a.get("href") or "")

    def handle_data(self, data: str) -> None:
        if self._in_no:
            self.numbers[int(data)] = len(self.rows) - 1
            self._in_no = False

    @classmethod
    def of(cls, page: str) -> Rows:
        p = cls()
        p.feed(page)
        p.close()
        return p

    def classes_of(self, line: int) -> set[str]:
        return self.rows[self.numbers[line]][0]

    def badges_of(self, line: int) -> list[str]:
        return self.rows[self.numbers[line]][1]


@pytest.fixture(scope="module")
def v31_folder(v31_result: RunResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v31-report") / "html"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        write_report(v31_result, V31_REL, out, GENERATED)
    return out


def _html_pages(folder: Path) -> Iterator[tuple[str, str]]:
    for p in sorted(folder.glob("*.html")):
        yield p.name, p.read_text(encoding="utf-8")


def test_written_folder_holds_exactly_the_rendered_pages(
    v31_folder: Path, v31_view: ReportView
) -> None:
    names = sorted(p.name for p in v31_folder.iterdir())
    assert names == sorted(render_pages(v31_view))
    assert "report.css" in names and "report.js" in names
    assert len([n for n in names if n.startswith("finding-")]) == 5
    assert len([n for n in names if n.startswith("fn-")]) == len(v31_view.functions)


def test_report_is_self_contained(v31_folder: Path) -> None:
    checked = 0
    for name, page in _html_pages(v31_folder):
        links = Links.of(page)
        for tag, attr, value in links.urls:
            where = f"{name}: <{tag} {attr}={value!r}>"
            v = value.strip().lower()
            assert "://" not in v and not v.startswith("//"), where
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", v), where  # no scheme at all
            assert "url(" not in v or v.startswith("url(#"), where
            if attr == "style":
                continue
            file_part = value.split("#", 1)[0]
            if file_part:
                assert "/" not in file_part and "\\" not in file_part, where
                assert (v31_folder / file_part).is_file(), where
            checked += 1
        # the only namespace URL allowed is the SVG namespace, which loads nothing
        assert set(links.xmlns) <= {"http://www.w3.org/2000/svg"}, name
        for s in links.scripts:
            assert s.get("src") == "report.js", (name, s)
    assert checked > 50
    css = (v31_folder / "report.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css and "://" not in css
    js = (v31_folder / "report.js").read_text(encoding="utf-8")
    for needle in ("fetch(", "XMLHttpRequest", "import(", "http:", "https:", ".src", "WebSocket"):
        assert needle not in js, needle


def test_every_page_links_back_to_the_index(v31_folder: Path) -> None:
    for name, page in _html_pages(v31_folder):
        hrefs = {v for _, a, v in Links.of(page).urls if a == "href"}
        assert {"index.html", "report.css"} <= hrefs, name


def test_trace_step_badges_point_at_trace_items(v31_folder: Path) -> None:
    for name, page in _html_pages(v31_folder):
        if not name.startswith("finding-"):
            continue
        links = Links.of(page)
        for _, _attr, value in links.urls:
            if value.startswith("#trace-"):
                assert value[1:] in links.ids, (name, value)


def test_every_in_page_fragment_has_a_target(v31_folder: Path) -> None:
    broken = []
    for name, page in _html_pages(v31_folder):
        links = Links.of(page)
        for _, _attr, value in links.urls:
            if value.startswith("#") and value[1:] not in links.ids:
                broken.append(f"{name}{value}")
    assert broken == []


# ---------------------------------------------------------------- hostile content
@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool, RunResult, Path]:
    root = tmp_path_factory.mktemp("hostile")
    tree, named = make_hostile_tree(root)
    result = engine.scan(tree)
    out = root / "html"
    write_report(result, tree, out, GENERATED)
    return tree, named, result, out


def test_hostile_source_text_is_escaped(hostile: tuple[Path, bool, RunResult, Path]) -> None:
    _, _, result, out = hostile
    [i] = [i for i, f in enumerate(result.findings, 1) if f.function == "dio_bio_add_page"]
    page = (out / f"finding-{i:04d}.html").read_text(encoding="utf-8")
    assert (
        "&lt;/script&gt;&lt;script&gt;window.__pwned=1;alert(1)&lt;/script&gt; "
        "&lt;img src=x onerror=alert(2)&gt; &amp; &#34;quotes&#34;" in page
    )
    for name, text in _html_pages(out):
        assert "</script><script>" not in text, name
        assert "<img" not in text and "<script>window" not in text, name
        links = Links.of(text)
        assert links.handlers == [], name
        assert "img" not in links.tags, name
        assert [s.get("src") for s in links.scripts] in ([], ["report.js"]), name


def test_hostile_file_name_is_escaped(hostile: tuple[Path, bool, RunResult, Path]) -> None:
    tree, named, result, out = hostile
    if not named:
        pytest.skip("the file system refused the hostile file name")
    hostile_path = f"mm/{HOSTILE_NAME}"
    mine = [i for i, f in enumerate(result.findings, 1) if f.location.path == hostile_path]
    assert len(mine) == 2, "the copy of follow_ref.c gives its two findings"
    escaped = "mm/wé &lt;&#34;x&#34;&gt; &amp; y.c"
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f'data-file="{escaped}"' in index
    assert f"<option>{escaped}</option>" in index
    assert f"<code>{escaped}:34:3</code>" in index
    for i in mine:
        page = (out / f"finding-{i:04d}.html").read_text(encoding="utf-8")
        assert f"<code>{escaped}</code>" in page  # the excerpt heading
        assert "get_page_foll" in page or "get_page(page)" in page  # its source is shown
        assert 'class="err"' not in page, "the source under the odd name is readable"
    for name, text in _html_pages(out):
        assert '<"x">' not in text and "& y.c" not in text, name
    # the pages themselves keep plain names: links never carry the file name
    assert all(
        re.fullmatch(r"(index|finding-\d{4}|fn-\d{4})\.html|report\.(css|js)", p.name)
        for p in out.iterdir()
    )


def test_hostile_tree_path_is_escaped(tmp_path: Path) -> None:
    tree = tmp_path / 'tree <b>"&'
    try:
        shutil.copytree(REPO / V31_REL, tree)
    except OSError:
        pytest.skip("the file system refused the hostile directory name")
    result = engine.scan(tree)
    view = build(result, tree, GENERATED)
    index = render_pages(view)["index.html"]
    assert "tree &lt;b&gt;&#34;&amp;</code>" in index and '<b>"&' not in index


def _same_functions_in_two_files_view(
    hostile: tuple[Path, bool, RunResult, Path],
) -> ReportView:
    tree, named, result, _ = hostile
    if not named:
        pytest.skip("the file system refused the hostile file name")
    return build(result, tree, GENERATED)


def test_callee_links_stay_in_the_callers_file(
    hostile: tuple[Path, bool, RunResult, Path],
) -> None:
    view = _same_functions_in_two_files_view(hostile)
    pages = {fn.page: fn for fn in view.functions}
    run = next(
        fn for fn in view.functions if (fn.path, fn.name) == ("mm/follow_ref.c", "follow_ref_run")
    )
    linked = [(e.function, pages[e.page].path) for e in run.callees if e.page is not None]
    assert linked and all(path == "mm/follow_ref.c" for _, path in linked), linked


def _svg_boxes(f: FindingView) -> list[str]:
    return re.findall(r'<text x="\d+" y="\d+" class="fn">([^<]*)</text>', str(f.svg))


def test_call_path_svg_follows_the_page(v31_view: ReportView) -> None:
    f1 = v31_view.findings[0]
    assert _svg_boxes(f1) == [
        "dio_refill_pages()",
        "dio_get_page()",
        "do_direct_IO()",
        "submit_page_section()",
        "dio_bio_add_page()",
    ]
    assert str(f1.svg).count('<g class="hop last">') == 1
    # the call path ends at the reference: the caller context after it is not drawn
    assert _svg_boxes(v31_view.findings[2]) == ["follow_ref_unlocked()"]


def test_call_path_svg_stops_at_the_first_reference_step(v31_view: ReportView) -> None:
    f4 = next(f for f in v31_view.findings if f.function == "follow_ref_foll")
    assert _svg_boxes(f4) == ["follow_ref_foll()"]


def test_ownership_findings_show_no_lock_columns() -> None:
    """A leak or over-release page says what is marked and leaves out the lock columns,
    which only mean something for the lock rule."""
    tree = Path("fixtures")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        result = engine.scan(tree, ["gup-leak/bad_partial_return_efault.c"])
    assert [f.rule_id for f in result.findings] == ["gup-leak"]
    pages = render_pages(build_in_repo(result, tree))
    (page,) = [p for name, p in pages.items() if name.startswith("finding-")]
    assert "the line reported" in page
    assert 'class="held"' not in page and 'class="locks"' not in page
    assert 'class="src"' in page  # the source is still shown, with the trace badges
