"""The release rules: gup-leak, gup-over-release and pin-put-mismatch.

The ownership analysis (analyzer/dataflow/ownership.py) finds the events; each rule
reports the events of its kind, with the rule's message and the event's trace.
"""

from __future__ import annotations

from analyzer.dataflow.ownership import Event
from analyzer.ir import render
from analyzer.model import Finding, Location, RuleOutcome, fingerprint
from analyzer.rules.loader import Rule

_TOOK = {"pin": "pinned", "get": "took references on", "either": "took"}
_NEEDED = {
    "pin": "unpin_user_page() or unpin_user_pages()",
    "get": "put_page() or release_pages()",
    "either": "the release of their family",
}


def check(rule: Rule, events: list[Event], acquisitions: int) -> tuple[list[Finding], RuleOutcome]:
    found = [_finding(rule, ev) for ev in events if ev.kind == rule.event]
    note = "each followed along every path of its function"
    return found, RuleOutcome(rule.id, acquisitions, len(found), note, "GUP acquisition(s)")


def _finding(rule: Rule, ev: Event) -> Finding:
    acq = ev.acquisition
    fn = ev.function
    text = rule.message_for(ev.detail).format(
        source=acq.source,
        pages=acq.key,
        function=fn.name,
        release=ev.release,
        requested=render(acq.requested) if acq.requested is not None else "",
        took=_TOOK[acq.family],
        needed=_NEEDED[acq.family],
    )
    anchor = f"{ev.kind}:{ev.detail}:{ev.release or ''}"
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        confidence=rule.confidence,
        message=text,
        location=Location(fn.path, ev.loc.line, ev.loc.col),
        function=fn.name,
        trace=ev.trace,
        fingerprint=fingerprint(rule.id, fn.path, fn.name, anchor, f"{acq.source}:{acq.key}"),
    )
