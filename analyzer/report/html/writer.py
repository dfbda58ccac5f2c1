"""Write the HTML audit report: a folder of static pages with relative links, one
stylesheet and one script, no network access. Written to a temporary folder, then
swapped in, so an interrupted run leaves the previous report whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pygments.formatters import HtmlFormatter

from analyzer.fsutil import current_umask
from analyzer.model import RunResult
from analyzer.report.html.view import ReportView, build, previous_fingerprints

HERE = Path(__file__).resolve().parent


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_pages(view: ReportView) -> dict[str, str]:
    """Every file of the report, by name."""
    env = _env()
    pages: dict[str, str] = {
        "index.html": env.get_template("index.html.j2").render(view=view),
        "report.css": (HERE / "report.css").read_text()
        + HtmlFormatter(style="default", nobackground=True).get_style_defs(  # type: ignore[no-untyped-call]
            "td.code"
        ),
        "report.js": (HERE / "report.js").read_text(),
    }
    finding = env.get_template("finding.html.j2")
    for i, f in enumerate(view.findings):
        prev = view.findings[i - 1].page if i > 0 else None
        nxt = view.findings[i + 1].page if i + 1 < len(view.findings) else None
        pages[f.page] = finding.render(view=view, f=f, prev=prev, next=nxt)
    function = env.get_template("function.html.j2")
    for fn in view.functions:
        pages[fn.page] = function.render(view=view, fn=fn)
    return pages


def write_report(
    result: RunResult,
    tree: Path,
    out_dir: Path,
    generated: str,
    baseline_json: Path | None = None,
) -> None:
    previous: dict[str, dict[str, Any]] | None = (
        previous_fingerprints(baseline_json) if baseline_json is not None else None
    )
    pages = render_pages(build(result, tree, generated, previous))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the report
    try:
        for name, text in pages.items():
            (tmp / name).write_text(text, encoding="utf-8")
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
