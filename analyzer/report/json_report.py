"""The JSON result: the contract other tools read (see README, "Output")."""

from __future__ import annotations

import json
from typing import Any

from analyzer.model import UNNEEDED_WHY, Coverage, RunResult, TraceStep

SCHEMA_VERSION = 1


def _step(s: TraceStep) -> dict[str, Any]:
    return {
        "path": s.location.path,
        "line": s.location.line,
        "column": s.location.column,
        "function": s.function,
        "note": s.note,
        "locks": list(s.locks),
    }


def coverage_dict(cov: Coverage) -> dict[str, Any]:
    return {
        "totals": {
            "files": len(cov.files),
            "functions_seen": cov.seen,
            "clean": cov.clean,
            "recovered": cov.recovered,
            "skipped": cov.skipped,
            "files_not_parsed": len(cov.failed_files),
            "lowered_ratio": round(cov.lowered_ratio, 6),
            "files_not_lowered": len(cov.unneeded),
        },
        "not_lowered": {"why": UNNEEDED_WHY, "files": list(cov.unneeded)},
        "files": [
            {
                "path": f.path,
                "functions_seen": f.seen,
                "clean": f.clean,
                "recovered": f.recovered,
                "skipped": [
                    {"name": s.name, "line": s.line, "reason": s.reason} for s in f.skipped
                ],
                "error": f.error,
            }
            for f in cov.files
        ],
    }


def result_dict(result: RunResult) -> dict[str, Any]:
    m = result.refcount_model
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "krefaudit", "version": result.tool_version},
        "tree": {
            "root": result.tree,
            "kernel_version": result.kernel_version,
            "paths": list(result.paths),
        },
        "refcount_model": {
            "name": m.name,
            "summary": m.summary,
            "source": m.source,
            "evidence": [_step(s) for s in m.evidence],
            "release_families": list(m.release_families),
        },
        "rules": [
            {
                "id": o.rule_id,
                "checked": o.checked,
                "reported": o.reported,
                "unit": o.unit,
                "note": o.note,
            }
            for o in result.outcomes
        ],
        "coverage": coverage_dict(result.coverage),
        "diagnostics": list(result.diagnostics),
        "left_out": result.left_out,
        "findings": [
            {
                "rule_id": f.rule_id,
                "severity": f.severity.value,
                "confidence": f.confidence.value,
                "path": f.location.path,
                "line": f.location.line,
                "column": f.location.column,
                "function": f.function,
                "message": f.message,
                "fingerprint": f.fingerprint,
                "trace": [_step(s) for s in f.trace],
            }
            for f in result.findings
        ],
    }


def render_json(result: RunResult) -> str:
    return json.dumps(result_dict(result), indent=2, ensure_ascii=False) + "\n"
