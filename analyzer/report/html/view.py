"""The HTML report's view model: plain data built from a RunResult and the tree's source
files. Templates read only this."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from pygments.lexers.c_cpp import CLexer
from pygments.token import STANDARD_TYPES, _TokenType

from analyzer.model import UNNEEDED_WHY, CallEdge, Finding, FunctionFacts, RunResult, TraceStep
from analyzer.report.html.svg import call_path_svg
from analyzer.rules.loader import load_rules

CONTEXT_LINES = 3
MAX_EXCERPT_LINES = 120
GUARD_CLASSES = ("pt", "compound", "irq")


@dataclass(frozen=True)
class SourceLine:
    number: int
    html: Markup
    is_ref: bool
    steps: tuple[int, ...]
    locks: str
    guarded: bool


@dataclass(frozen=True)
class Excerpt:
    path: str
    function: str
    function_page: str | None
    lines: tuple[SourceLine, ...]
    missing: str | None = None  # why the source could not be shown


@dataclass(frozen=True)
class StepView:
    number: int
    path: str
    line: int
    column: int
    function: str
    note: str
    locks: str
    anchor: str


def _shows_locks(rule_id: str) -> bool:
    """Only lock rules have locks to show at each step and line (a rule no longer
    shipped, from a compared report, is taken as one)."""
    analysis = {r.id: r.analysis for r in load_rules()}
    return analysis.get(rule_id, "reference-race") == "reference-race"


@dataclass(frozen=True)
class FindingView:
    id: str
    page: str
    rule_id: str
    severity: str
    confidence: str
    message: str
    path: str
    line: int
    column: int
    function: str
    subsystem: str
    fingerprint: str
    status: str  # new | unchanged | "" (no comparison)
    steps: tuple[StepView, ...]
    excerpts: tuple[Excerpt, ...]
    svg: Markup
    locks: bool  # the rule is about locks: show what is held at each step and line


@dataclass(frozen=True)
class EdgeView:
    function: str
    page: str | None
    path: str
    line: int
    held: str


@dataclass(frozen=True)
class FunctionView:
    page: str
    name: str
    path: str
    line: int
    callers: tuple[EdgeView, ...]
    callees: tuple[EdgeView, ...]
    callers_known: bool
    entry_locks: str


@dataclass(frozen=True)
class FixedView:
    rule_id: str
    path: str
    line: int
    function: str
    message: str


@dataclass
class ReportView:
    title: str
    generated: str
    tool_version: str
    tree: str
    kernel_version: str
    paths: str
    model_name: str
    model_summary: str
    model_source: str
    model_evidence: tuple[StepView, ...]
    release_families: tuple[str, ...]
    rules: list[dict[str, Any]]
    coverage: dict[str, Any]
    diagnostics: tuple[str, ...]
    left_out: int
    findings: list[FindingView]
    functions: list[FunctionView]
    fixed: list[FixedView]
    compared: bool
    groups: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


# ---------------------------------------------------------------- source highlighting
def _css_class(tok: _TokenType | None) -> str:
    while tok is not None and tok not in STANDARD_TYPES:
        tok = tok.parent
    return str(STANDARD_TYPES[tok]) if tok is not None else ""


def highlight_lines(text: str) -> list[Markup]:
    """C source as one escaped, highlighted HTML fragment per line; every span closes on
    its own line, so lines can be shown one by one."""
    lines: list[list[str]] = [[]]
    lexer = CLexer(stripnl=False, ensurenl=False)  # type: ignore[no-untyped-call]
    for tok, value in lexer.get_tokens(text):
        cls = _css_class(tok)
        for i, part in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if part:
                piece = str(escape(part))
                lines[-1].append(f'<span class="{cls}">{piece}</span>' if cls else piece)
    return [Markup("".join(parts)) for parts in lines]


class Sources:
    """Source files of the tree, read once and highlighted once."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self._cache: dict[str, list[Markup] | str] = {}

    def lines(self, path: str) -> list[Markup] | str:
        """The highlighted lines of `path`, or why they cannot be shown."""
        if path not in self._cache:
            try:
                root = self.tree.resolve()
                f = (self.tree / path).resolve()
                f.relative_to(root)
                text = f.read_bytes().decode("utf-8", "replace")
                self._cache[path] = highlight_lines(text)
            except (OSError, ValueError) as e:
                self._cache[path] = f"source not available: {e}"
        return self._cache[path]


# ---------------------------------------------------------------- building the view
def _locks_text(locks: tuple[str, ...]) -> str:
    return ", ".join(locks) if locks else "none"


def _guarded(locks: tuple[str, ...]) -> bool:
    return any(lk.split(":", 1)[0] in GUARD_CLASSES for lk in locks)


def _step_views(steps: tuple[TraceStep, ...]) -> tuple[StepView, ...]:
    return tuple(
        StepView(
            i,
            s.location.path,
            s.location.line,
            s.location.column,
            s.function,
            s.note,
            _locks_text(s.locks),
            f"step-{i}",
        )
        for i, s in enumerate(steps, 1)
    )


class _Builder:
    def __init__(self, result: RunResult, tree: Path) -> None:
        self.result = result
        self.sources = Sources(tree)
        self.facts = {(f.location.path, f.name): f for f in result.functions}
        self.fn_pages = {key: f"fn-{i:04d}.html" for i, key in enumerate(sorted(self.facts), 1)}

    def page_of(self, path: str, name: str) -> str | None:
        return self.fn_pages.get((path, name))

    def excerpt(
        self, path: str, function: str, steps: list[StepView], ref_line: int | None
    ) -> Excerpt:
        page = self.page_of(path, function)
        src = self.sources.lines(path)
        if isinstance(src, str):
            return Excerpt(path, function, page, (), src)
        facts: FunctionFacts | None = self.facts.get((path, function))
        wanted = [s.line for s in steps]
        lo = max(1, min(wanted) - CONTEXT_LINES)
        hi = min(len(src), max(wanted) + CONTEXT_LINES)
        if facts is not None:
            start, end = facts.location.line, min(facts.end_line, len(src))
            if end - start < MAX_EXCERPT_LINES:  # a short function is shown whole
                lo, hi = start, end
            else:
                lo, hi = max(lo, start), min(hi, end)
        held = dict(facts.held_by_line) if facts is not None else {}
        current: tuple[str, ...] = ()
        lines = []
        for n in range(lo, hi + 1):
            if n in held:
                current = held[n]
            numbers = tuple(s.number for s in steps if s.line == n)
            lines.append(
                SourceLine(
                    n,
                    src[n - 1],
                    n == ref_line,
                    numbers,
                    _locks_text(current) if facts is not None else "",
                    _guarded(current),
                )
            )
        return Excerpt(path, function, page, tuple(lines))

    def finding(self, i: int, f: Finding, status: str) -> FindingView:
        steps = _step_views(f.trace)
        groups: dict[tuple[str, str], list[StepView]] = {}
        for s in steps:
            groups.setdefault((s.path, s.function), []).append(s)
        excerpts = tuple(
            self.excerpt(
                path,
                fn,
                ss,
                f.location.line if (path, fn) == (f.location.path, f.function) else None,
            )
            for (path, fn), ss in groups.items()
        )
        return FindingView(
            id=f"F{i:04d}",
            page=f"finding-{i:04d}.html",
            rule_id=f.rule_id,
            severity=f.severity.value,
            confidence=f.confidence.value,
            message=f.message,
            path=f.location.path,
            line=f.location.line,
            column=f.location.column,
            function=f.function,
            subsystem=f.location.path.split("/", 1)[0] if "/" in f.location.path else ".",
            fingerprint=f.fingerprint,
            status=status,
            steps=steps,
            excerpts=excerpts,
            svg=call_path_svg(f.trace[: self._sink_index(f) + 1]),
            locks=_shows_locks(f.rule_id),
        )

    @staticmethod
    def _sink_index(f: Finding) -> int:
        """The trace step at the reference itself: the call path ends there; the steps
        after it explain the lock context and the refcount model."""
        at = [i for i, s in enumerate(f.trace) if s.location == f.location]
        return at[0] if at else len(f.trace) - 1

    def function(self, facts: FunctionFacts) -> FunctionView:
        def edges(es: tuple[CallEdge, ...]) -> tuple[EdgeView, ...]:
            out = []
            for e in es:
                page = self.fn_pages.get((e.function_path, e.function))
                out.append(
                    EdgeView(
                        e.function, page, e.location.path, e.location.line, _locks_text(e.held)
                    )
                )
            return tuple(out)

        return FunctionView(
            page=self.fn_pages[(facts.location.path, facts.name)],
            name=facts.name,
            path=facts.location.path,
            line=facts.location.line,
            callers=edges(facts.callers),
            callees=edges(facts.callees),
            callers_known=facts.callers_known,
            entry_locks=_locks_text(facts.entry_locks),
        )


def previous_fingerprints(path: Path) -> dict[str, dict[str, Any]]:
    """Findings of a previous JSON result, by fingerprint."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {f["fingerprint"]: f for f in doc.get("findings", [])}


def build(
    result: RunResult,
    tree: Path,
    generated: str,
    previous: dict[str, dict[str, Any]] | None = None,
) -> ReportView:
    b = _Builder(result, tree)
    findings = []
    for i, f in enumerate(result.findings, 1):
        status = "" if previous is None else ("unchanged" if f.fingerprint in previous else "new")
        findings.append(b.finding(i, f, status))
    current = {f.fingerprint for f in result.findings}
    fixed = [
        FixedView(p["rule_id"], p["path"], p["line"], p["function"], p["message"])
        for fp, p in sorted((previous or {}).items(), key=lambda kv: (kv[1]["path"], kv[1]["line"]))
        if fp not in current
    ]
    cov = result.coverage
    m = result.refcount_model
    groups = {
        "rule": sorted(Counter(f.rule_id for f in findings).items()),
        "subsystem": sorted(Counter(f.subsystem for f in findings).items()),
        "file": sorted(Counter(f.path for f in findings).items()),
    }
    return ReportView(
        title="krefaudit report",
        generated=generated,
        tool_version=result.tool_version,
        tree=result.tree,
        kernel_version=result.kernel_version or "",
        paths=" ".join(result.paths),
        model_name=m.name,
        model_summary=m.summary,
        model_source=m.source,
        model_evidence=_step_views(m.evidence),
        release_families=m.release_families,
        rules=[
            {
                "id": o.rule_id,
                "checked": o.checked,
                "reported": o.reported,
                "unit": o.unit,
                "note": o.note,
            }
            for o in result.outcomes
        ],
        coverage={
            "files": len(cov.files),
            "seen": cov.seen,
            "clean": cov.clean,
            "recovered": cov.recovered,
            "skipped": cov.skipped,
            "ratio": f"{100 * cov.lowered_ratio:.2f}%",
            "unneeded": len(cov.unneeded),
            "unneeded_why": UNNEEDED_WHY,
            "per_file": [
                {
                    "path": fc.path,
                    "seen": fc.seen,
                    "clean": fc.clean,
                    "recovered": fc.recovered,
                    "skipped": [(s.name, s.line, s.reason) for s in fc.skipped],
                    "error": fc.error or "",
                }
                for fc in cov.files
            ],
        },
        diagnostics=result.diagnostics,
        left_out=result.left_out,
        findings=findings,
        functions=[b.function(f) for f in result.functions],
        fixed=fixed,
        compared=previous is not None,
        groups=groups,
    )
