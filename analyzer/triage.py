"""What a run does not report: findings in a baseline, suppressed ones, ignored rules.

- A baseline is a sorted text file of fingerprints, one per line (`#` comments allowed).
- A suppression file is YAML: a list of entries, each with a required `reason` and either
  a `fingerprint`, or a `rule` and a `function` (optionally a `path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyzer.model import Finding
from analyzer.rules.loader import LDict, RuleError, load_yaml

_SUPPRESSION_KEYS = {"fingerprint", "rule", "function", "path", "reason"}


@dataclass(frozen=True, slots=True)
class Suppression:
    reason: str
    fingerprint: str | None = None
    rule: str | None = None
    function: str | None = None
    path: str | None = None

    def matches(self, f: Finding) -> bool:
        if self.fingerprint is not None:
            return f.fingerprint == self.fingerprint
        return (
            f.rule_id == self.rule
            and f.function == self.function
            and (self.path is None or f.location.path == self.path)
        )


def read_baseline(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}:1: cannot read baseline: {e}") from e
    out = set()
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if ":" not in text or " " in text:
            raise RuleError(f"{path}:{n}: not a fingerprint: {text!r}")
        out.add(text)
    return frozenset(out)


def render_baseline(findings: tuple[Finding, ...]) -> str:
    prints = sorted({f.fingerprint for f in findings})
    return "# krefaudit baseline: one finding fingerprint per line\n" + "".join(
        p + "\n" for p in prints
    )


def read_suppressions(path: Path) -> tuple[Suppression, ...]:
    doc = load_yaml(path)
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise RuleError(f"{path}:1: a suppression file is a list of entries")
    out = []
    for entry in doc:
        if not isinstance(entry, LDict):
            raise RuleError(f"{path}:1: each suppression is a mapping")
        line = entry.line
        for key in entry:
            if key not in _SUPPRESSION_KEYS:
                raise RuleError(f"{path}:{entry.lines[key]}: unknown field {key!r}")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise RuleError(f"{path}:{line}: a suppression needs a reason")
        has_print = "fingerprint" in entry
        if has_print == ("rule" in entry or "function" in entry):
            raise RuleError(f"{path}:{line}: give a fingerprint, or a rule and a function")
        if not has_print and not ("rule" in entry and "function" in entry):
            raise RuleError(f"{path}:{line}: a rule suppression needs both rule and function")
        for key in ("fingerprint", "rule", "function", "path"):
            if key in entry and not isinstance(entry[key], str):
                raise RuleError(f"{path}:{entry.lines[key]}: {key!r} must be a string")
        out.append(
            Suppression(
                reason.strip(),
                entry.get("fingerprint"),
                entry.get("rule"),
                entry.get("function"),
                entry.get("path"),
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Triage:
    baseline: frozenset[str] = frozenset()
    suppressions: tuple[Suppression, ...] = ()
    ignored_rules: frozenset[str] = frozenset()

    def split(self, findings: tuple[Finding, ...]) -> tuple[tuple[Finding, ...], int]:
        """(findings to report, how many were left out)."""
        kept = tuple(
            f
            for f in findings
            if f.rule_id not in self.ignored_rules
            and f.fingerprint not in self.baseline
            and not any(s.matches(f) for s in self.suppressions)
        )
        return kept, len(findings) - len(kept)
