"""Load rule files and kernel-API tables from rules/: data, read safely, checked against a
schema; a bad field fails with its file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    guards: tuple[str, ...]
    message: str
    docs: RuleDocs
    path: Path


_RULE_KEYS = {
    "id",
    "name",
    "severity",
    "confidence",
    "sources",
    "sinks",
    "guards",
    "message",
    "docs",
}
_DOC_KEYS = {"what", "why", "example", "instead", "references"}
_GUARDS = {"pt", "compound", "irq"}
_SOURCE_FAMILIES = {"array", "single"}


def load_rule(path: Path) -> Rule:
    d = load_yaml(path)
    if not isinstance(d, LDict):
        raise RuleError(f"{path}:1: a rule file holds one mapping")
    for key in d:
        _check(key in _RULE_KEYS, path, d, key, f"unknown field {key!r}")
    for key in sorted(_RULE_KEYS - set(d)):
        _check(False, path, d, None, f"missing field {key!r}")
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
    sources = _str_list(path, d, "sources")
    _check(set(sources) <= _SOURCE_FAMILIES, path, d, "sources", f"sources: {_SOURCE_FAMILIES}")
    guards = _str_list(path, d, "guards")
    _check(set(guards) <= _GUARDS, path, d, "guards", f"'guards' must be among {sorted(_GUARDS)}")
    docs = d["docs"]
    _check(isinstance(docs, LDict), path, d, "docs", "'docs' must be a mapping")
    for key in docs:
        _check(key in _DOC_KEYS, path, docs, key, f"unknown docs field {key!r}")
    for key in ("what", "why", "example", "instead"):
        _check(isinstance(docs.get(key), str), path, docs, key, f"docs.{key} must be text")
    return Rule(
        id=d["id"],
        name=d["name"],
        severity=Severity(d["severity"]),
        confidence=Confidence(d["confidence"]),
        sources=sources,
        sinks=_str_list(path, d, "sinks"),
        guards=guards,
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
class KernelApi:
    locks: LockApi
    gup: GupApi
    refs: RefApi


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
    return KernelApi(locks, gup, refs)
