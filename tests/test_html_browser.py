"""The HTML report in a real browser: headless Chromium driven by the system chromedriver
(Debian packages chromium and chromium-driver), pages opened from file:// URLs.

Skipped when /usr/bin/chromedriver or the selenium package is missing, unless
KREFAUDIT_REQUIRE_BROWSER=1, where that is a failure. Screenshots of the index (desktop
and narrow) and of a finding page go to test-artifacts/ at the top of the checkout.

Run only these tests with `python3 -m pytest -q -m browser`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer import engine
from analyzer.model import RunResult
from analyzer.report.html.writer import write_report
from tests.test_html import GENERATED, REPO, V31_REL, make_hostile_tree

# `browser` is not (yet) registered in pyproject's markers; selecting with -m works anyway.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    pytestmark = pytest.mark.browser

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
REQUIRED = os.environ.get("KREFAUDIT_REQUIRE_BROWSER") == "1"


def _unavailable(message: str) -> None:
    if REQUIRED:
        pytest.fail(f"{message} (KREFAUDIT_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message)


try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_SELENIUM = False


def _options(profile: Path, javascript: bool = True) -> Any:
    opts = webdriver.ChromeOptions()
    if CHROMIUM.exists():
        opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1366,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    # leave alerts open so that the tests can see them instead of selenium dismissing them
    opts.unhandled_prompt_behavior = "ignore"
    # every request the page makes, file:// ones included (Resource Timing leaves those out)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    if not javascript:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return opts


def _start(profile: Path, javascript: bool = True) -> WebDriver:
    if not HAVE_SELENIUM:
        _unavailable("the selenium package is not installed: pip install selenium")
    if not CHROMEDRIVER.exists():
        _unavailable(f"{CHROMEDRIVER} missing: apt-get install chromium chromium-driver")
    # An explicit driver path: selenium-manager never runs, nothing is downloaded.
    service = Service(str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=_options(profile, javascript))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    d = _start(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def v31(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        result = engine.scan(V31_REL)
        out = tmp_path_factory.mktemp("v31-browser") / "html"
        write_report(result, V31_REL, out, GENERATED)
    return result, out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path, bool]:
    root = tmp_path_factory.mktemp("hostile-browser")
    tree, named = make_hostile_tree(root)
    result = engine.scan(tree)
    out = root / "html"
    write_report(result, tree, out, GENERATED)
    return result, out, named


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# ---------------------------------------------------------------- helpers
def _open(driver: WebDriver, page: Path) -> None:
    driver.get_log("performance")  # forget the requests of earlier pages
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _visible_rows(driver: WebDriver) -> list[WebElement]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
    return [r for r in rows if r.is_displayed()]


def _visible_ids(driver: WebDriver) -> list[str]:
    return [r.get_attribute("data-id") or "" for r in _visible_rows(driver)]


def _count_text(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "f-count").text


def _type(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "f-text")
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() does not fire `input`: the filter listens to it
        driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)


def _resources(driver: WebDriver) -> list[str]:
    """What the page's Resource Timing lists. Chromium records no entries for file://
    resources, so an empty list is the expected answer of a self-contained page."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return names


def _requests(driver: WebDriver) -> list[str]:
    """The URLs of every request our pages made since the last call (DevTools
    Network.requestWillBeSent events of the performance log). Requests of the browser's
    own chrome:// pages (the new-tab page loading at start-up) are left out."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            params = msg["params"]
            if not params.get("documentURL", "").startswith("chrome://"):
                urls.append(params["request"]["url"])
    return urls


def _assert_only_local(driver: WebDriver, *expected: str) -> None:
    resources = _resources(driver)
    assert all(n.startswith("file://") for n in resources), resources
    requests = _requests(driver)
    assert requests and all(u.startswith("file://") for u in requests), requests
    loaded = {u.rsplit("/", 1)[1] for u in requests}
    assert set(expected) <= loaded, (expected, requests)


def _no_alert(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        pytest.fail(f"an alert is open: {text!r}")


def _screenshot(driver: WebDriver, path: Path, width: int) -> None:
    """A screenshot of the whole page at a window `width` pixels wide: the window is
    made as tall as the page (plus whatever the window takes beyond the viewport)."""
    driver.set_window_size(width, 900)
    extra = driver.get_window_size()["height"] - driver.execute_script("return window.innerHeight")
    height = driver.execute_script(
        "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
    )
    driver.set_window_size(width, min(int(height) + max(int(extra), 0), 8000))
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 10_000, path
    driver.set_window_size(1366, 900)


# ---------------------------------------------------------------- the index
def test_index_filters_rows(driver: WebDriver, v31: tuple[RunResult, Path]) -> None:
    result, out = v31
    total = len(result.findings)
    assert total == 5
    _open(driver, out / "index.html")
    form = driver.find_element(By.CSS_SELECTOR, "form.filters")
    WebDriverWait(driver, 5).until(lambda d: form.is_displayed())
    assert driver.execute_script("return document.querySelector('form.filters').hidden") is False
    assert _count_text(driver) == f"{total} of {total} shown"  # report.js ran
    assert len(_visible_rows(driver)) == total

    # the file filter
    file_select = Select(driver.find_element(By.ID, "f-file"))
    assert [o.text for o in file_select.options] == [
        "all",
        "fs/direct-io.c",
        "mm/follow_ref.c",
        "mm/thp_paths.c",
    ]
    file_select.select_by_visible_text("mm/follow_ref.c")
    want = [
        f"F{i:04d}"
        for i, f in enumerate(result.findings, 1)
        if f.location.path == "mm/follow_ref.c"
    ]
    assert _visible_ids(driver) == want == ["F0003", "F0004"]
    assert _count_text(driver) == f"2 of {total} shown"
    file_select.select_by_index(0)
    assert len(_visible_rows(driver)) == total

    # the rule filter: the only rule keeps every row, and combines with the search text
    rule_select = Select(driver.find_element(By.ID, "f-rule"))
    assert [o.text for o in rule_select.options] == ["all", "tail-ref-race"]
    rule_select.select_by_visible_text("tail-ref-race")
    assert len(_visible_rows(driver)) == total
    _type(driver, "no such function anywhere")
    assert _visible_rows(driver) == [] and _count_text(driver) == f"0 of {total} shown"

    # the search text: function names, messages and paths, case-insensitively
    _type(driver, "GET_PAGE_FOLL")
    assert _visible_ids(driver) == ["F0004"]
    _type(driver, "direct-io")
    assert _visible_ids(driver) == ["F0001", "F0002"]
    _type(driver, "get_user_pages")  # get_user_pages_fast() and get_user_pages()
    assert _visible_ids(driver) == ["F0001", "F0002", "F0005"]
    _type(driver, "")
    rule_select.select_by_index(0)
    assert (
        len(_visible_rows(driver)) == total and _count_text(driver) == f"{total} of {total} shown"
    )


def test_index_sorts_by_column(driver: WebDriver, v31: tuple[RunResult, Path]) -> None:
    _, out = v31
    _open(driver, out / "index.html")
    location = driver.find_element(By.CSS_SELECTOR, "#findings th[data-key=path]")
    location.click()
    assert _visible_ids(driver) == ["F0001", "F0002", "F0003", "F0004", "F0005"]
    assert "asc" in (location.get_attribute("class") or "")
    location.click()
    assert _visible_ids(driver) == ["F0005", "F0004", "F0003", "F0002", "F0001"]
    assert "desc" in (location.get_attribute("class") or "")
    driver.find_element(By.CSS_SELECTOR, "#findings th[data-key=function]").click()
    # dio_bio_add_page, follow_ref_foll, follow_ref_unlocked, submit_page_section, thp_...
    assert _visible_ids(driver) == ["F0001", "F0004", "F0003", "F0002", "F0005"]


def test_index_makes_no_network_request(driver: WebDriver, v31: tuple[RunResult, Path]) -> None:
    _, out = v31
    _open(driver, out / "index.html")
    requests = _requests(driver)
    assert all(u.startswith("file://") for u in requests), requests
    assert sorted(u.rsplit("/", 1)[1] for u in requests) == [
        "index.html",
        "report.css",
        "report.js",
    ]
    assert all(n.startswith("file://") for n in _resources(driver))
    sheets = driver.execute_script(
        "return Array.from(document.styleSheets).map(s => s.href).filter(Boolean)"
    )
    assert [h.rsplit("/", 1)[1] for h in sheets] == ["report.css"]


def test_index_screenshots(driver: WebDriver, v31: tuple[RunResult, Path], artifacts: Path) -> None:
    _, out = v31
    _open(driver, out / "index.html")
    _screenshot(driver, artifacts / "index-desktop-1366.png", 1366)
    driver.set_window_size(420, 900)
    inner = driver.execute_script("return window.innerWidth")
    assert inner <= 420, inner
    # the narrow layout stacks each finding's cells and must not scroll sideways
    assert (
        driver.execute_script(
            "return getComputedStyle(document.querySelector('#findings thead')).display"
        )
        == "none"
    )
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the narrow index scrolls sideways by {overflow}px"
    _screenshot(driver, artifacts / "index-narrow-420.png", 420)


# ---------------------------------------------------------------- a finding page
def test_finding_page_trace_and_reference_line(
    driver: WebDriver, v31: tuple[RunResult, Path]
) -> None:
    result, out = v31
    _open(driver, out / "index.html")
    i, finding = next(
        (i, f) for i, f in enumerate(result.findings, 1) if f.function == "follow_ref_foll"
    )
    row = driver.find_element(By.CSS_SELECTOR, f"#findings tr[data-id='F{i:04d}']")
    row.find_element(By.LINK_TEXT, f"F{i:04d}").click()
    WebDriverWait(driver, 10).until(ec.url_contains(f"finding-{i:04d}.html"))
    assert driver.title == f"F{i:04d} tail-ref-race {finding.location.path}:{finding.location.line}"

    steps = driver.find_elements(By.CSS_SELECTOR, "ol.steps > li")
    assert len(steps) == len(finding.trace)
    for n, (li, s) in enumerate(zip(steps, finding.trace, strict=True), 1):
        assert li.get_attribute("id") == f"trace-{n}"
        assert f"{s.location.path}:{s.location.line}:{s.location.column}" in li.text

    refs = driver.find_elements(By.CSS_SELECTOR, "table.src tr.ref")
    assert len(refs) == 1
    ref = refs[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", ref)
    assert ref.is_displayed()
    assert ref.find_element(By.CSS_SELECTOR, "td.no").text == str(finding.location.line)
    assert "get_page_foll(page);" in ref.find_element(By.CSS_SELECTOR, "td.code").text
    # shaded: the rows under the page-table lock; the reference row is not among them
    guarded = [
        e.find_element(By.CSS_SELECTOR, "td.no").text
        for e in driver.find_elements(By.CSS_SELECTOR, "table.src tr.guard")
    ]
    assert guarded == ["48", "49", "50"]
    ref_bg = driver.execute_script(
        "return getComputedStyle(arguments[0].querySelector('td.code')).backgroundColor", ref
    )
    guard_bg = driver.execute_script(
        "return getComputedStyle(document.querySelector('tr.guard td.code')).backgroundColor"
    )
    plain_bg = driver.execute_script(
        "return getComputedStyle(document.querySelector('table.src tr:not(.ref):not(.guard)"
        " td.code')).backgroundColor"
    )
    assert len({ref_bg, guard_bg, plain_bg}) == 3, (ref_bg, guard_bg, plain_bg)

    # a step badge in the margin jumps to its item of the trace
    badges = ref.find_elements(By.CSS_SELECTOR, "a.badge")
    assert [b.text for b in badges] == ["2", "5"]
    badges[1].click()
    WebDriverWait(driver, 5).until(ec.url_contains("#trace-5"))
    assert driver.execute_script("return document.querySelector(':target').id") == "trace-5"
    target = driver.find_element(By.ID, "trace-5")
    assert target.is_displayed()
    top = driver.execute_script("return arguments[0].getBoundingClientRect().top", target)
    assert -1 <= top < driver.execute_script("return window.innerHeight")

    # and the trace item's link jumps back to the step's badge in the source margin
    driver.find_element(By.CSS_SELECTOR, "#trace-3 > a").click()
    WebDriverWait(driver, 5).until(ec.url_contains("#step-3"))
    target_row = driver.execute_script(
        "const t = document.querySelector(':target'); return [t.tagName, t.closest('tr').rowIndex]"
    )
    assert target_row[0] == "A" and target_row[1] >= 0


def test_finding_page_screenshots(
    driver: WebDriver, v31: tuple[RunResult, Path], artifacts: Path
) -> None:
    result, out = v31
    i = next(i for i, f in enumerate(result.findings, 1) if f.function == "follow_ref_foll")
    _open(driver, out / f"finding-{i:04d}.html")
    _screenshot(driver, artifacts / f"finding-{i:04d}-desktop-1366.png", 1366)
    driver.set_window_size(420, 900)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the narrow finding page scrolls sideways by {overflow}px"
    _screenshot(driver, artifacts / f"finding-{i:04d}-narrow-420.png", 420)
    _open(driver, out / "finding-0001.html")
    _screenshot(driver, artifacts / "finding-0001-desktop-1366.png", 1366)


def test_finding_page_navigation(driver: WebDriver, v31: tuple[RunResult, Path]) -> None:
    _, out = v31
    _open(driver, out / "finding-0002.html")
    driver.find_element(By.LINK_TEXT, "next").click()
    WebDriverWait(driver, 5).until(ec.url_contains("finding-0003.html"))
    driver.find_element(By.LINK_TEXT, "previous").click()
    WebDriverWait(driver, 5).until(ec.url_contains("finding-0002.html"))
    heading = driver.find_elements(By.CSS_SELECTOR, ".excerpt h3 a")[0]
    heading.click()
    WebDriverWait(driver, 5).until(ec.url_matches(r"fn-\d{4}\.html$"))
    assert driver.find_element(By.TAG_NAME, "h1").text.endswith("()")
    driver.find_element(By.LINK_TEXT, "All findings").click()
    WebDriverWait(driver, 5).until(ec.url_contains("index.html"))


# ---------------------------------------------------------------- hostile content
def test_hostile_source_runs_nothing(
    driver: WebDriver, hostile: tuple[RunResult, Path, bool]
) -> None:
    result, out, _ = hostile
    [i] = [i for i, f in enumerate(result.findings, 1) if f.function == "dio_bio_add_page"]
    _open(driver, out / f"finding-{i:04d}.html")
    _no_alert(driver)
    assert driver.execute_script("return window.__pwned") is None
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 0
    # the comment is shown as text, whole, inside the excerpt
    codes = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.src td.code")]
    assert any(
        "</script><script>window.__pwned=1;alert(1)</script> <img src=x onerror=alert(2)>"
        ' & "quotes"' in c
        for c in codes
    )
    _assert_only_local(driver, f"finding-{i:04d}.html", "report.css")


def test_hostile_file_name_in_the_browser(
    driver: WebDriver, hostile: tuple[RunResult, Path, bool]
) -> None:
    result, out, named = hostile
    if not named:
        pytest.skip("the file system refused the hostile file name")
    _open(driver, out / "index.html")
    _no_alert(driver)
    assert driver.execute_script("return window.__pwned") is None
    hostile_path = 'mm/wé <"x"> & y.c'
    Select(driver.find_element(By.ID, "f-file")).select_by_visible_text(hostile_path)
    ids = _visible_ids(driver)
    assert len(ids) == 2
    assert all(r.get_attribute("data-file") == hostile_path for r in _visible_rows(driver))
    _type(driver, '<"x"> &')
    assert _visible_ids(driver) == ids
    link = driver.find_element(By.LINK_TEXT, ids[0])
    link.click()
    WebDriverWait(driver, 5).until(ec.url_contains("finding-"))
    _no_alert(driver)
    assert driver.execute_script("return window.__pwned") is None
    headings = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".excerpt h3 code")]
    assert hostile_path in headings
    _assert_only_local(driver, "report.css")
    for page in sorted(out.glob("*.html")):
        _open(driver, page)
        _no_alert(driver)
        assert driver.execute_script("return window.__pwned") is None, page.name
        _assert_only_local(driver, page.name, "report.css")


# ---------------------------------------------------------------- without scripts
def test_without_javascript_the_filters_stay_hidden(
    v31: tuple[RunResult, Path], tmp_path: Path
) -> None:
    _, out = v31
    d = _start(tmp_path / "profile-nojs", javascript=False)
    try:
        _open(d, out / "index.html")
        assert d.find_element(By.ID, "f-count").text == ""  # report.js did not run
        assert len(_visible_rows(d)) == 5  # the table is complete without scripts
        assert not d.find_element(By.CSS_SELECTOR, "form.filters").is_displayed()
    finally:
        d.quit()
