"""Load rule files and kernel-API tables from rules/: data, read safely, checked against a
schema; a bad field fails with its file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from analyzer.model import Confidence, Severity


class RuleError(Exception):
    """A rule or API file that does not match its schema: message starts with file:line."""


def rules_dir() -> Path:
    """rules/ inside an installed wheel (analyzer/_rules), else the checkout's rules/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_rules", here.parent / "rules"):
        if (candidate / "api").is_dir():
            return candidate
    raise RuleError(f"{here}: no rules/ directory found next to the analyzer package")


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line of each key."""


class LDict(dict[str, Any]):
    line: int = 0
    lines: dict[str, int]


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LDict:
    loader.flatten_mapping(node)
    out = LDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise RuleError(f"{{file}}:{key_node.start_mark.line + 1}: keys must be strings")
        if key in out:
            raise RuleError(f"{{file}}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}:1: cannot read: {e}") from e
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except RuleError as e:
        raise RuleError(str(e).replace("{file}", str(path))) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RuleError(f"{path}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None


def _check(cond: bool, path: Path, d: LDict, key: str | None, msg: str) -> None:
    if not cond:
        line = d.lines.get(key, d.line) if key is not None else d.line
        raise RuleError(f"{path}:{line}: {msg}")


def _str_list(path: Path, d: LDict, key: str) -> tuple[str, ...]:
    v = d.get(key)
    ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    _check(ok, path, d, key, f"{key!r} must be a list of strings")
    return tuple(v or ())


@dataclass(frozen=True, slots=True)
class RuleDocs:
    what: str
    why: str
    example: str
    instead: str
    references: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    severity: Severity
    confidence: Confidence
    analysis: str  # reference-race | ownership
    message: str
    docs: RuleDocs
    path: Path
    # reference-race: where pages come from, the reference calls, the guards
    sources: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()
    guards: tuple[str, ...] = ()
    # ownership: the kind of event reported, and a message per event detail
    event: str = ""
    messages: tuple[tuple[str, str], ...] = ()

    def message_for(self, detail: str) -> str:
        return dict(self.messages).get(detail, self.message)


_COMMON_KEYS = {"id", "name", "severity", "confidence", "analysis", "message", "docs"}
_ANALYSIS_KEYS = {
    "reference-race": {"sources", "sinks", "guards"},
    "ownership": {"event", "messages"},
}
_REQUIRED = {"reference-race": {"sources", "sinks", "guards"}, "ownership": {"event"}}
_EVENTS = {"leak", "over-release", "mismatch"}
_DOC_KEYS = {"what", "why", "example", "instead", "references"}
_GUARDS = {"pt", "compound", "irq"}
_SOURCE_FAMILIES = {"array", "single"}


def load_rule(path: Path) -> Rule:
    d = load_yaml(path)
    if not isinstance(d, LDict):
        raise RuleError(f"{path}:1: a rule file holds one mapping")
    analysis = str(d.get("analysis"))
    kinds = sorted(_ANALYSIS_KEYS)
    _check(analysis in _ANALYSIS_KEYS, path, d, "analysis", f"'analysis' must be one of {kinds}")
    allowed = _COMMON_KEYS | _ANALYSIS_KEYS[analysis]
    for key in d:
        _check(key in allowed, path, d, key, f"unknown field {key!r} (for analysis {analysis})")
    for key in sorted(_COMMON_KEYS - {"analysis"} | _REQUIRED[analysis] - set(d)):
        _check(key in d, path, d, None, f"missing field {key!r}")
    for key in ("id", "name", "message"):
        _check(isinstance(d[key], str) and d[key], path, d, key, f"{key!r} must be a string")
    _check(
        re.fullmatch(r"[a-z][a-z0-9-]*", d["id"]) is not None and d["id"] == path.stem,
        path,
        d,
        "id",
        f"'id' must be lower-case words joined by '-' and match the file name {path.stem!r}",
    )
    severities = [s.value for s in Severity]
    _check(d["severity"] in severities, path, d, "severity", f"'severity' must be {severities}")
    confidences = [c.value for c in Confidence]
    _check(
        d["confidence"] in confidences, path, d, "confidence", f"'confidence' must be {confidences}"
    )
    docs = d["docs"]
    _check(isinstance(docs, LDict), path, d, "docs", "'docs' must be a mapping")
    for key in docs:
        _check(key in _DOC_KEYS, path, docs, key, f"unknown docs field {key!r}")
    for key in ("what", "why", "example", "instead"):
        _check(isinstance(docs.get(key), str), path, docs, key, f"docs.{key} must be text")
    rule = Rule(
        id=d["id"],
        name=d["name"],
        severity=Severity(d["severity"]),
        confidence=Confidence(d["confidence"]),
        analysis=analysis,
        message=d["message"],
        docs=RuleDocs(
            docs["what"].strip(),
            docs["why"].strip(),
            docs["example"].rstrip(),
            docs["instead"].strip(),
            _str_list(path, docs, "references"),
        ),
        path=path,
    )
    if analysis == "reference-race":
        sources = _str_list(path, d, "sources")
        ok = set(sources) <= _SOURCE_FAMILIES
        _check(ok, path, d, "sources", f"sources: {sorted(_SOURCE_FAMILIES)}")
        guards = _str_list(path, d, "guards")
        ok = set(guards) <= _GUARDS
        _check(ok, path, d, "guards", f"'guards' must be among {sorted(_GUARDS)}")
        return replace(rule, sources=sources, sinks=_str_list(path, d, "sinks"), guards=guards)
    ok = d["event"] in _EVENTS
    _check(ok, path, d, "event", f"'event' must be one of {sorted(_EVENTS)}")
    messages = d.get("messages", LDict())
    ok = isinstance(messages, LDict) and all(isinstance(v, str) for v in messages.values())
    _check(ok, path, d, "messages", "'messages' maps an event detail to a message")
    return replace(rule, event=d["event"], messages=tuple(sorted(messages.items())))


@lru_cache(maxsize=4)
def load_rules(directory: Path | None = None) -> tuple[Rule, ...]:
    directory = directory or rules_dir()
    return tuple(load_rule(p) for p in sorted(directory.glob("*.yaml")))


# ---------------------------------------------------------------- kernel API tables
@dataclass(frozen=True, slots=True)
class LockSpec:
    """What one lock API call does (see rules/api/locks.yaml for the fields)."""

    acquire: tuple[str, int] | None = None  # ("arg"|"out"|"ret", index)
    release: int | None = None
    when: str | None = None
    cls: str | None = None
    irq: str | None = None
    asserts: int | None = None
    arity: int | None = None


@dataclass(frozen=True, slots=True)
class LockApi:
    functions: dict[str, tuple[LockSpec, ...]]
    class_patterns: dict[str, tuple[re.Pattern[str], ...]]
    pt_lock_pointers: frozenset[str]
    bug_on: frozenset[str]
    is_locked: frozenset[str]


@dataclass(frozen=True, slots=True)
class GupApi:
    array: frozenset[str]
    single: frozenset[str]
    passthrough: frozenset[str]
    head_of: frozenset[str]


@dataclass(frozen=True, slots=True)
class RefModelSpec:
    name: str
    summary: str
    tail_race: bool
    serializes: bool


@dataclass(frozen=True, slots=True)
class RefApi:
    reference: dict[str, int]  # primitive -> page argument index
    never_serializes: frozenset[str]
    models: dict[str, RefModelSpec]
    default_model: str


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    family: str  # put | unpin | any
    page: int | None = None  # the page argument of a one-page release
    pages: int | None = None  # the array argument of a bulk release
    count: int | None = None  # ... and its count argument


@dataclass(frozen=True, slots=True)
class SingleSpec:
    returns: frozenset[str]  # what else it may return: NULL, ERR_PTR
    when_flag: str | None = None  # referenced only when the flags argument holds this


@dataclass(frozen=True, slots=True)
class ReleaseApi:
    release: dict[str, ReleaseSpec]
    pin: frozenset[str]
    pin_flag: str
    either: frozenset[str]
    bytes: frozenset[str]
    count_params: tuple[str, ...]
    flags_params: tuple[str, ...]
    single: dict[str, SingleSpec]
    borrowers: frozenset[str]
    borrower_patterns: tuple[re.Pattern[str], ...]
    identities: frozenset[str]
    folio_of: frozenset[str]  # page -> its folio, which holds the page's reference
    transparent: frozenset[str]  # wrappers a condition reads through: unlikely(x)
    is_err: frozenset[str]  # tests that a pointer is an ERR_PTR
    is_err_or_null: frozenset[str]  # ... or NULL

    def borrows(self, name: str) -> bool:
        return name in self.borrowers or any(p.search(name) for p in self.borrower_patterns)


@dataclass(frozen=True, slots=True)
class Relevance:
    """Whether a file's text holds one of the relevance tokens (see
    KernelApi.relevance). The tokens come in groups, each under an anchor that all of
    its tokens hold: a group is looked into only when its anchor is in the text, so a
    file holding no anchor (most of a tree) is searched once per anchor, not once per
    token. A token with a space matches any run of white space there (`struct\tpage`)."""

    groups: tuple[tuple[bytes, tuple[bytes, ...], tuple[re.Pattern[bytes], ...]], ...]

    def __call__(self, text: bytes) -> bool:
        return any(
            anchor in text
            and (any(t in text for t in tokens) or any(p.search(text) for p in spaced))
            for anchor, tokens, spaced in self.groups
        )


@dataclass(frozen=True, slots=True)
class KernelApi:
    locks: LockApi
    gup: GupApi
    refs: RefApi
    release: ReleaseApi
    words: tuple[str, ...]  # prefilter.yaml: a file without any of them is not lowered
    anchors: tuple[str, ...]  # prefilter.yaml: what the tokens are grouped under

    def relevance(self, rules: tuple[Rule, ...]) -> Relevance:
        """What a file's text must hold for a scan to lower it: the prefilter words, every
        name the API files list and the reference primitives `rules` check, less those
        that hold another token (`get_page` holds `page`). Lock primitives count when
        they take page-table or compound locks: by class, or by handing back the lock
        (pte_offset_map_lock). Each token goes under the first anchor it holds; one that
        holds none is an anchor of its own."""
        names = {*self.words, *self.gup.array, *self.gup.single, *self.gup.passthrough}
        names |= {*self.gup.head_of, *self.refs.reference, *self.release.release}
        names |= {*self.release.pin, *self.release.single, *self.locks.pt_lock_pointers}
        names |= {
            name
            for name, specs in self.locks.functions.items()
            if any(
                s.cls in ("pt", "compound") or (s.acquire and s.acquire[0] in ("out", "ret"))
                for s in specs
            )
        }
        for rule in rules:
            names |= set(rule.sinks)
        kept = sorted(n for n in names if not any(o != n and o in n for o in names))
        groups: dict[str, list[str]] = {}
        for name in kept:
            anchor = next((a for a in self.anchors if a in name), name)
            groups.setdefault(anchor, []).append(name)
        return Relevance(
            tuple(
                (
                    anchor.encode(),
                    tuple(n.encode() for n in group if " " not in n),
                    tuple(
                        re.compile(rb"\s+".join(re.escape(w.encode()) for w in n.split()))
                        for n in group
                        if " " in n
                    ),
                )
                for anchor, group in groups.items()
            )
        )


_LOCK_KEYS = {"acquire", "release", "when", "class", "irq", "assert", "arity"}


def _lock_spec(path: Path, name: str, d: Any) -> LockSpec:
    if not isinstance(d, LDict):
        raise RuleError(f"{path}:1: functions.{name} must be a mapping")
    for key in d:
        _check(key in _LOCK_KEYS, path, d, key, f"{name}: unknown field {key!r}")
    acquire = None
    if "acquire" in d:
        a = d["acquire"]
        ok = isinstance(a, LDict) and len(a) == 1 and next(iter(a)) in ("arg", "out", "ret")
        _check(ok, path, d, "acquire", f"{name}: acquire takes one of arg: N, out: N, ret: true")
        kind, idx = next(iter(a.items()))
        acquire = (kind, -1 if kind == "ret" else int(idx))
    release = None
    if "release" in d:
        r = d["release"]
        _check(isinstance(r, LDict) and "arg" in r, path, d, "release", f"{name}: release: {{arg}}")
        release = int(r["arg"])
    when = d.get("when")
    _check(when in (None, "nonnull", "nonzero", "zero"), path, d, "when", f"{name}: bad 'when'")
    irq = d.get("irq")
    _check(
        irq in (None, "disable", "enable"),
        path,
        d,
        "irq",
        f"{name}: 'irq' must be disable or enable",
    )
    cls = d.get("class")
    _check(cls in (None, "pt", "compound", "other"), path, d, "class", f"{name}: bad 'class'")
    asserts = d.get("assert")
    _check(asserts is None or isinstance(asserts, int), path, d, "assert", f"{name}: assert: N")
    arity = d.get("arity")
    _check(arity is None or isinstance(arity, int), path, d, "arity", f"{name}: arity: N")
    return LockSpec(acquire, release, when, cls, irq, asserts, arity)


def _mapping(path: Path, d: Any) -> LDict:
    if not isinstance(d, LDict):
        raise RuleError(f"{path}:1: expected a mapping at the top")
    return d


@lru_cache(maxsize=4)
def load_api(directory: Path | None = None) -> KernelApi:
    api = (directory or rules_dir()) / "api"
    lp = api / "locks.yaml"
    ld = _mapping(lp, load_yaml(lp))
    functions: dict[str, tuple[LockSpec, ...]] = {}
    for name, spec in ld["functions"].items():
        specs = spec if isinstance(spec, list) else [spec]
        functions[name] = tuple(_lock_spec(lp, name, s) for s in specs)
    classes = {cls: tuple(re.compile(p) for p in pats or []) for cls, pats in ld["classes"].items()}
    locks = LockApi(
        functions,
        classes,
        frozenset(_str_list(lp, ld, "pt_lock_pointers")),
        frozenset(_str_list(lp, ld, "bug_on")),
        frozenset(_str_list(lp, ld, "is_locked")),
    )
    gp = api / "gup.yaml"
    gd = _mapping(gp, load_yaml(gp))
    gup = GupApi(
        array=frozenset(_str_list(gp, gd, "array")),
        single=frozenset(_str_list(gp, gd, "single")),
        passthrough=frozenset(_str_list(gp, gd, "passthrough")),
        head_of=frozenset(_str_list(gp, gd, "head_of")),
    )
    rp = api / "refs.yaml"
    rd = _mapping(rp, load_yaml(rp))
    models = {
        name: RefModelSpec(name, m["summary"], bool(m["tail_race"]), bool(m["serializes"]))
        for name, m in rd["models"].items()
    }
    _check(rd["default_model"] in models, rp, rd, "default_model", "unknown default_model")
    refs = RefApi(
        {name: int(spec["page"]) for name, spec in rd["reference"].items()},
        frozenset(_str_list(rp, rd, "never_serializes")),
        models,
        rd["default_model"],
    )
    pp = api / "prefilter.yaml"
    pd = _mapping(pp, load_yaml(pp))
    words, anchors = _str_list(pp, pd, "words"), _str_list(pp, pd, "anchors")
    release = _load_release(api / "release.yaml")
    return KernelApi(locks, gup, refs, release, words, anchors)


_FAMILIES = ("put", "unpin", "any")


def _load_release(path: Path) -> ReleaseApi:
    d = _mapping(path, load_yaml(path))
    release: dict[str, ReleaseSpec] = {}
    _check(isinstance(d.get("release"), LDict), path, d, "release", "'release' must be a mapping")
    for name, spec in d["release"].items():
        ok = isinstance(spec, LDict) and set(spec) <= {"page", "pages", "count", "family"}
        _check(ok, path, d["release"], name, f"{name}: fields are page, pages, count, family")
        _check(spec.get("family") in _FAMILIES, path, spec, "family", f"{name}: family {_FAMILIES}")
        one, bulk = "page" in spec, "pages" in spec and "count" in spec
        _check(one != bulk, path, spec, None, f"{name}: give either page, or pages and count")
        ints = all(isinstance(v, int) for k, v in spec.items() if k != "family")
        _check(ints, path, spec, None, f"{name}: argument indexes must be integers")
        release[name] = ReleaseSpec(
            spec["family"], spec.get("page"), spec.get("pages"), spec.get("count")
        )
    single: dict[str, SingleSpec] = {}
    _check(isinstance(d.get("single"), LDict), path, d, "single", "'single' must be a mapping")
    for name, spec in d["single"].items():
        ok = isinstance(spec, LDict) and set(spec) <= {"returns", "when_flag"}
        _check(ok, path, d["single"], name, f"{name}: fields are returns, when_flag")
        returns = _str_list(path, spec, "returns")
        ok = set(returns) <= {"NULL", "ERR_PTR"}
        _check(ok, path, spec, "returns", 'returns: "NULL", "ERR_PTR"')
        flag = spec.get("when_flag")
        _check(flag is None or isinstance(flag, str), path, spec, "when_flag", "a flag name")
        single[name] = SingleSpec(frozenset(returns), flag)
    _check(isinstance(d.get("pin_flag"), str), path, d, "pin_flag", "'pin_flag' must be a name")
    patterns = []
    for p in _str_list(path, d, "borrower_patterns"):
        try:
            patterns.append(re.compile(p))
        except re.error as e:
            raise RuleError(
                f"{path}:{d.lines['borrower_patterns']}: bad pattern {p!r}: {e}"
            ) from None
    return ReleaseApi(
        release=release,
        pin=frozenset(_str_list(path, d, "pin")),
        pin_flag=d["pin_flag"],
        either=frozenset(_str_list(path, d, "either")),
        bytes=frozenset(_str_list(path, d, "bytes")),
        count_params=_str_list(path, d, "count_params"),
        flags_params=_str_list(path, d, "flags_params"),
        single=single,
        borrowers=frozenset(_str_list(path, d, "borrowers")),
        borrower_patterns=tuple(patterns),
        identities=frozenset(_str_list(path, d, "identities")),
        folio_of=frozenset(_str_list(path, d, "folio_of")),
        transparent=frozenset(_str_list(path, d, "transparent")),
        is_err=frozenset(_str_list(path, d, "is_err")),
        is_err_or_null=frozenset(_str_list(path, d, "is_err_or_null")),
    )
