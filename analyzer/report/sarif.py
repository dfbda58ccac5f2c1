"""SARIF 2.1.0: rules with their documentation, results with fingerprints, the trace as
a code flow. Trimmed to GitHub code scanning's limits, and says so when it trims."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from analyzer.model import Finding, RunResult, Severity, TraceStep
from analyzer.rules.loader import Rule

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub code scanning keeps at most 25,000 results per run and 1,000 locations per
# thread flow; more is rejected or dropped silently, so trim here and say so.
MAX_RESULTS = 25_000
MAX_FLOW_STEPS = 1_000

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def _location(step: TraceStep | None, path: str, line: int, column: int) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "physicalLocation": {
            # A URI reference: spaces, quotes, '<' and non-ASCII are percent-encoded.
            "artifactLocation": {"uri": quote(path, safe="/"), "uriBaseId": "SRCROOT"},
            "region": {"startLine": line, "startColumn": column},
        }
    }
    if step is not None:
        loc["message"] = {"text": step.note}
        loc["logicalLocations"] = [{"name": step.function, "kind": "function"}]
    return loc


def _rule(rule: Rule) -> dict[str, Any]:
    d = rule.docs
    markdown = (
        f"## What it does\n{d.what}\n\n## Why it is bad\n{d.why}\n\n"
        f"## Example\n```c\n{d.example}\n```\n\n## Instead\n{d.instead}\n\n## References\n"
        + "".join(f"- {r}\n" for r in d.references)
    )
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.name},
        "fullDescription": {"text": d.what},
        "help": {"text": markdown, "markdown": markdown},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"precision": rule.confidence.value, "tags": ["linux-kernel", "refcount"]},
    }


def _result(f: Finding, rule_index: dict[str, int]) -> tuple[dict[str, Any], bool]:
    steps = f.trace[:MAX_FLOW_STEPS]
    flow = [
        {
            "location": _location(s, s.location.path, s.location.line, s.location.column),
            "state": {"locks": {"text": ", ".join(s.locks) or "none"}},
        }
        for s in steps
    ]
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index[f.rule_id],
        "level": _LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [
            {
                **_location(None, f.location.path, f.location.line, f.location.column),
                "logicalLocations": [{"name": f.function, "kind": "function"}],
            }
        ],
        "partialFingerprints": {"krefaudit/v1": f.fingerprint},
        "codeFlows": [{"threadFlows": [{"locations": flow}]}],
        "properties": {"confidence": f.confidence.value},
    }
    return result, len(f.trace) > MAX_FLOW_STEPS


def sarif_dict(result: RunResult, rules: tuple[Rule, ...], root_uri: str) -> dict[str, Any]:
    rule_index = {r.id: i for i, r in enumerate(rules)}
    findings = result.findings[:MAX_RESULTS]
    results = []
    trimmed_flows = 0
    for f in findings:
        r, trimmed = _result(f, rule_index)
        results.append(r)
        trimmed_flows += trimmed
    notes = [
        {"level": "error", "message": {"text": f"not parsed: {d}"}} for d in result.diagnostics
    ]
    trims = []
    if len(result.findings) > MAX_RESULTS:
        trims.append(f"{len(result.findings)} results, the first {MAX_RESULTS} kept")
    if trimmed_flows:
        trims.append(f"{trimmed_flows} traces cut to {MAX_FLOW_STEPS} steps")
    notes += [{"level": "warning", "message": {"text": f"output trimmed: {t}"}} for t in trims]
    m = result.refcount_model
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "krefaudit",
                        "version": result.tool_version,
                        "semanticVersion": result.tool_version,
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "originalUriBaseIds": {"SRCROOT": {"uri": root_uri}},
                "invocations": [
                    {
                        "executionSuccessful": not result.diagnostics,
                        "toolExecutionNotifications": notes,
                    }
                ],
                "results": results,
                "properties": {
                    "refcountModel": {"name": m.name, "summary": m.summary, "source": m.source},
                    "functionsSeen": result.coverage.seen,
                    "functionsSkipped": result.coverage.skipped,
                },
            }
        ],
    }


def render_sarif(result: RunResult, rules: tuple[Rule, ...], root_uri: str) -> str:
    return json.dumps(sarif_dict(result, rules, root_uri), indent=2, ensure_ascii=False) + "\n"
