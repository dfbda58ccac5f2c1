"""What everything downstream of the engine sees: findings, traces, coverage, run facts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

from analyzer.records import record


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


class Confidence(Enum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True, order=True)
class Location:
    path: str  # relative to the tree root
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class TraceStep:
    location: Location
    function: str
    note: str
    locks: tuple[str, ...] = ()  # locks held at this step, as "class:expr"


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    severity: Severity
    confidence: Confidence
    message: str
    location: Location
    function: str
    trace: tuple[TraceStep, ...]
    fingerprint: str

    @property
    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.path, loc.line, loc.column, self.rule_id, self.message)


FINGERPRINT_VERSION = "v1"


def fingerprint(rule_id: str, path: str, function: str, anchor: str, source: str) -> str:
    """A fingerprint that survives unrelated line shifts and whitespace changes: it hashes
    the rule, file, function, the sink's text and the source's text, not line numbers."""
    parts = [rule_id, path, function, " ".join(anchor.split()), " ".join(source.split())]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{FINGERPRINT_VERSION}:{digest}"


@record
@dataclass(frozen=True, slots=True)
class SkippedFunction:
    path: str
    name: str
    line: int
    reason: str


@record
@dataclass(frozen=True, slots=True)
class FileCoverage:
    path: str
    seen: int
    clean: int
    recovered: int
    skipped: tuple[SkippedFunction, ...]
    error: str | None = None  # the whole file was not parsed, and why


# Why a scan leaves a file out (rules/api/prefilter.yaml), in every report format.
UNNEEDED_WHY = (
    "their text declares no struct page and names no folio, page-table lock or primitive"
    " the rules track (krefaudit scan --lower-all lowers them)"
)


@dataclass(frozen=True, slots=True)
class Coverage:
    files: tuple[FileCoverage, ...]
    # Files read but not lowered: their text holds no relevance token of the rules.
    unneeded: tuple[str, ...] = ()

    @property
    def seen(self) -> int:
        return sum(f.seen for f in self.files)

    @property
    def clean(self) -> int:
        return sum(f.clean for f in self.files)

    @property
    def recovered(self) -> int:
        return sum(f.recovered for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(len(f.skipped) for f in self.files)

    @property
    def failed_files(self) -> tuple[FileCoverage, ...]:
        return tuple(f for f in self.files if f.error is not None)

    @property
    def lowered_ratio(self) -> float:
        return (self.clean + self.recovered) / self.seen if self.seen else 1.0


@dataclass(frozen=True, slots=True)
class ModelEvidence:
    """The refcount model the run found in the tree, and where it was read from."""

    name: str
    summary: str
    source: str  # "tree", "default" or "override"
    evidence: tuple[TraceStep, ...] = ()
    # The release families the tree declares, e.g. "unpin: unpin_user_page, unpin_user_pages"
    release_families: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """Per-rule facts of a run: how many sites were checked, and why none may be reported."""

    rule_id: str
    checked: int
    reported: int
    note: str = ""
    unit: str = "reference site(s) on GUP pages"  # what `checked` counts


@dataclass(frozen=True, slots=True)
class CallEdge:
    """One call between two functions, from the side of one of them."""

    function: str  # the function at the other end
    function_path: str  # the file defining it
    location: Location  # where the call is
    held: tuple[str, ...]  # locks held at the call, as "class:expr"


@dataclass(frozen=True, slots=True)
class FunctionFacts:
    """What an auditor needs of a function that appears in a trace."""

    name: str
    location: Location
    end_line: int
    callers: tuple[CallEdge, ...]
    callees: tuple[CallEdge, ...]
    callers_known: bool  # false when exported, address-taken or without callers
    entry_locks: tuple[str, ...]  # held on entry, learned from every caller
    held_by_line: tuple[tuple[int, tuple[str, ...]], ...]  # first statement of each line


@dataclass(frozen=True, slots=True)
class RunResult:
    tool_version: str
    tree: str
    paths: tuple[str, ...]
    refcount_model: ModelEvidence
    coverage: Coverage
    findings: tuple[Finding, ...]
    outcomes: tuple[RuleOutcome, ...] = ()
    kernel_version: str | None = None
    diagnostics: tuple[str, ...] = field(default=())  # input errors, one line each
    left_out: int = 0  # findings not reported: in the baseline, suppressed, or rule ignored
    functions: tuple[FunctionFacts, ...] = ()  # the functions that appear in traces
    # False when `functions` was not worked out (patch mode, which draws no HTML report)
    has_functions: bool = True
