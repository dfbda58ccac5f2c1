"""gcc-style text: one `path:line:col: warning: message [rule]` line per finding, its trace
as indented `note:` lines, then a short summary of the run."""

from __future__ import annotations

from analyzer.model import UNNEEDED_WHY, Coverage, Finding, RunResult, TraceStep


def _note(step: TraceStep, with_locks: bool) -> str:
    loc = step.location
    locks = f" [held: {', '.join(step.locks)}]" if step.locks and with_locks else ""
    return f"  {loc.path}:{loc.line}:{loc.column}: note: {step.note}{locks}"


def finding_lines(findings: tuple[Finding, ...], with_locks: bool = True) -> list[str]:
    """Each finding as a gcc-style warning line followed by its trace as note lines."""
    out: list[str] = []
    for f in findings:
        loc = f.location
        out.append(
            f"{loc.path}:{loc.line}:{loc.column}: {f.severity.value}: {f.message} [{f.rule_id}]"
        )
        out.extend(_note(s, with_locks) for s in f.trace)
    return out


def model_line(result: RunResult) -> str:
    m = result.refcount_model
    if m.source == "default":
        where = "no get_page() definition in the tree; default assumed, see --refcount-model"
    elif m.source == "override":
        where = "set with --refcount-model"
    else:
        first = m.evidence[0].location
        where = f"read from get_page() at {first.path}:{first.line}"
    return f"refcount model: {m.name}: {m.summary} ({where})"


def summary_lines(result: RunResult) -> list[str]:
    families = result.refcount_model.release_families
    lines = [model_line(result), f"release families: {'; '.join(families) or 'none declared'}"]
    for o in result.outcomes:
        lines.append(f"{o.rule_id}: {o.reported} reported of {o.checked} {o.unit}")
        if o.note:
            lines.append(f"{o.rule_id}: {o.note}")
    if result.left_out:
        lines.append(
            f"{result.left_out} finding(s) left out by the baseline, suppressions or --ignore"
        )
    return lines + coverage_lines(result.coverage, result.diagnostics)


def coverage_lines(cov: Coverage, diagnostics: tuple[str, ...] | list[str]) -> list[str]:
    """Totals, then every function and file that was not analyzed, and why."""
    lines = [
        f"coverage: {cov.seen} functions in {len(cov.files)} files: {cov.clean} clean,"
        f" {cov.recovered} recovered from parse errors, {cov.skipped} skipped"
        f" ({100 * cov.lowered_ratio:.2f}% lowered)"
    ]
    if cov.unneeded:
        lines.append(f"not lowered: {len(cov.unneeded)} more files: {UNNEEDED_WHY}")
    for f in cov.files:
        for s in f.skipped:
            lines.append(f"not analyzed: {s.path}:{s.line}: {s.name}: {s.reason}")
    lines.extend(f"not parsed: {d}" for d in diagnostics)
    return lines


def render_text(result: RunResult) -> str:
    out = finding_lines(result.findings)
    out.extend(f"krefaudit: {line}" for line in summary_lines(result))
    return "\n".join(out) + "\n"
