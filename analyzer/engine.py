"""The pipeline: discover, parse, model the program, analyze, judge; returns plain data."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from analyzer import __version__
from analyzer.dataflow.locks import LockAnalysis
from analyzer.dataflow.ownership import Event, Ownership
from analyzer.dataflow.provenance import Provenance
from analyzer.factstore import FactStore, digest
from analyzer.frontend.parse import InputError, check_source, parse_bytes
from analyzer.ir import FileIR, Function, Status, give_bodies, take_bodies
from analyzer.lineshift import LineShift, Move, Unplaced
from analyzer.model import (
    CallEdge,
    Coverage,
    FileCoverage,
    Finding,
    FunctionFacts,
    Location,
    RunResult,
    SkippedFunction,
)
from analyzer.program.model import CallSite, Program
from analyzer.program.tree import (
    DefinitionIndex,
    Discovery,
    TreeError,
    definition_files,
    discover,
    kernel_version,
)
from analyzer.records import record
from analyzer.rules import refmodel, release
from analyzer.rules.loader import KernelApi, Relevance, load_api, load_rules
from analyzer.rules.tail_ref_race import TailRefRace

DEFAULT_PATHS = ("mm", "fs/direct-io.c")
# How many levels of callees of get_page() are looked up in the tree's headers and mm/.
_CONTEXT_DEPTH = 4

Progress = Callable[[str], None]


@record
@dataclass(frozen=True, slots=True)
class _Read:
    """A function whose body an analysis read, and where it was."""

    key: str
    text_digest: bytes
    line: int
    column: int
    end_line: int

    @staticmethod
    def of(fn: Function) -> _Read:
        return _Read(fn.key, fn.text_digest, fn.loc.line, fn.loc.col, fn.end_line)


@record
@dataclass(frozen=True, slots=True)
class _Seen:
    """What a run made of one scanned file."""

    digest: str  # of its content ("" when it could not be read)
    # shape_of() its IR; None when it is not part of the program (not lowered, or not C
    # the front end reads)
    shape: str | None
    coverage: FileCoverage | None  # None when it was not lowered (not relevant)
    diagnostic: str | None  # why it could not be read or lowered
    read: tuple[_Read, ...] = ()  # its functions whose bodies an analysis read


@dataclass(slots=True)
class Parsed:
    files: list[FileIR]
    seen: dict[str, _Seen]  # every discovered file, in discovery order
    problems: tuple[str, ...]  # of the discovery
    # Files lowered while the scanned ones were, because the context may need them
    # (see _prefetch); None for one that could not be lowered.
    prefetched: dict[str, FileIR | None] = field(default_factory=dict)

    @property
    def coverage(self) -> Coverage:
        return _coverage(self.seen)

    @property
    def diagnostics(self) -> list[str]:
        return _diagnostics(self.problems, self.seen)


def _coverage(seen: dict[str, _Seen]) -> Coverage:
    files = tuple(s.coverage for s in seen.values() if s.coverage is not None)
    unneeded = tuple(rel for rel, s in seen.items() if s.coverage is None)
    return Coverage(files, unneeded)


def _diagnostics(problems: tuple[str, ...], seen: dict[str, _Seen]) -> list[str]:
    return [*problems, *(s.diagnostic for s in seen.values() if s.diagnostic is not None)]


# What the front end makes of one file: whether its text holds a relevance token, and
# its IR, or why it could not be read or lowered, or None when it was not lowered.
Entry = tuple[bool, FileIR | str | None]


@dataclass(frozen=True, slots=True)
class _Job:
    tree: Path
    rel: str
    relevant: Relevance  # what a file must hold to be lowered (rules/api/prefilter.yaml)
    lower_all: bool  # lower files that hold none of them too
    pickled: bool  # hand the entry back pickled, ready for the fact store (_Pickled)


# An entry pickled without its function bodies, and the bodies pickled apart (None when
# it holds no IR): how the fact store keeps them.
_Pickled = tuple[bytes, bytes | None]


def _parse_one(job: _Job) -> tuple[str, str, Entry | _Pickled]:
    """(rel, content hash, entry) of one file; runs in worker processes."""
    d, entry = _read_entry(job)
    return job.rel, d, _pickle(entry) if job.pickled else entry


def _read_entry(job: _Job) -> tuple[str, Entry]:
    """The content hash ("" when unreadable) and the entry of one file."""
    try:
        data = (job.tree / job.rel).read_bytes()
    except OSError as e:
        return "", (True, f"{job.rel}: cannot read: {e.strerror or e}")
    relevant = job.relevant(data)
    entry: Entry
    problem = check_source(data, job.rel)
    if problem is not None:
        entry = (relevant, problem)
    elif relevant or job.lower_all:
        try:
            entry = (relevant, parse_bytes(data, job.rel))
        except InputError as e:
            entry = (relevant, str(e))
    else:
        entry = (False, None)
    return digest(data), entry


def _pickle(entry: Entry) -> _Pickled:
    ir = entry[1]
    bodies = None
    if isinstance(ir, FileIR):
        bodies = pickle.dumps(take_bodies(ir), pickle.HIGHEST_PROTOCOL)
    return pickle.dumps(entry, pickle.HIGHEST_PROTOCOL), bodies


class _StoredBodies:
    """The function bodies of a file whose IR came from the fact store, read from the
    store when an analysis first asks for one. When the store's copy is damaged or gone,
    the file is lowered again (and stored again)."""

    def __init__(self, tree: Path, rel: str, d: str, store: FactStore) -> None:
        self.tree, self.rel, self.digest, self.store = tree, rel, d, store
        self.bodies: tuple[bytes, ...] | None = None

    def body(self, index: int) -> bytes:
        if self.bodies is None:
            self.bodies = self.store.bodies(self.rel, self.digest)
            if self.bodies is None:
                self.bodies = self._lower_again()
        return self.bodies[index]

    def _lower_again(self) -> tuple[bytes, ...]:
        relevant = load_api().relevance(load_rules())
        d, entry = _read_entry(_Job(self.tree, self.rel, relevant, True, True))
        blob, bodies = _pickle(entry)
        if d != self.digest or bodies is None:
            raise TreeError(f"{self.rel}: changed while krefaudit ran; run it again")
        self.store.put_files([(self.rel, d, blob, bodies)])
        got: tuple[bytes, ...] = pickle.loads(bodies)
        return got


def _usable(entry: Entry, lower_all: bool) -> bool:
    """A cached entry answers this run unless the run must lower what it did not."""
    relevant, outcome = entry
    return outcome is not None or (not relevant and not lower_all)


def _digests(tree: Path, rels: list[str] | tuple[str, ...], store: FactStore) -> dict[str, str]:
    """Content hashes of the readable ones among `rels` (unreadable ones are reported by
    the parse)."""
    out = {}
    base = os.fspath(tree)
    for rel in rels:
        try:
            out[rel] = store.file_digest(os.path.join(base, rel))
        except OSError:
            continue
    return out


# With a store, a run that lowers fewer files than this most likely finds its context's
# choice there, without the definition search a prefetch costs (about as long as
# lowering 20 files on two cores).
_PREFETCH_WORK = 100


def _cached(
    tree: Path, rels: tuple[str, ...], lower_all: bool, store: FactStore | None
) -> dict[str, tuple[str, Entry]]:
    """(content hash, entry) of those of `rels` the store holds for this run."""
    if store is None:
        return {}
    wanted = _digests(tree, rels, store).items()
    cached = {rel: (d, e) for rel, d, e in store.files(wanted) if _usable(e, lower_all)}
    for rel, (d, (_relevant, ir)) in cached.items():
        if isinstance(ir, FileIR):
            give_bodies(ir, _StoredBodies(tree, rel, d, store))
    return cached


def _entries(
    tree: Path,
    rels: tuple[str, ...],
    lower_all: bool,
    jobs: int,
    store: FactStore | None,
    progress: Progress | None,
    prefetch: Callable[[], tuple[str, ...]] | None = None,
) -> Iterator[tuple[str, str, Entry]]:
    """(rel, content hash, entry) of each of `rels`, in order: from the store, else from
    the front end in `jobs` processes (and then stored). When the processes start,
    `prefetch` is asked, while they work, for more files; their entries (lowered
    whatever their text) follow, in its order."""
    cached = _cached(tree, rels, lower_all, store)
    relevant = load_api().relevance(load_rules())
    work = [
        _Job(tree, rel, relevant, lower_all, store is not None) for rel in rels if rel not in cached
    ]
    more: tuple[str, ...] = ()
    if jobs > 1 and len(work) > 1:
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        results: Iterator[tuple[str, str, Entry | _Pickled]] = pool.map(
            _parse_one, work, chunksize=8
        )
        if prefetch is not None and (store is None or len(work) >= _PREFETCH_WORK):
            more = prefetch()
            cached.update(_cached(tree, more, True, store))
            extra = [
                _Job(tree, rel, relevant, True, store is not None)
                for rel in more
                if rel not in cached
            ]
            later = pool.map(_parse_one, extra)
            results = itertools.chain(results, later)
    else:
        pool = None
        results = map(_parse_one, work)
    fresh: list[tuple[str, str, bytes, bytes | None]] = []
    try:
        for i, rel in enumerate((*rels, *more)):
            if progress is not None and i % 50 == 0 and i < len(rels):
                progress(f"parsing {i}/{len(rels)} {rel}")
            if rel in cached:
                yield rel, *cached[rel]
                continue
            got, d, res = next(results)
            assert got == rel
            if isinstance(res, tuple) and isinstance(res[0], bytes):
                blob, bodies = res
                if d:
                    fresh.append((rel, d, blob, bodies))
                res = pickle.loads(blob)
                if bodies is not None:
                    give_bodies(res[1], pickle.loads(bodies))
            yield rel, d, res
            if len(fresh) >= 256 and store is not None:
                store.put_files(fresh)
                fresh = []
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if store is not None:
            store.put_files(fresh)
            store.flush()


def parse_paths(
    tree: Path,
    paths: list[str],
    progress: Progress | None = None,
    jobs: int = 1,
    store: FactStore | None = None,
    lower_all: bool = True,
) -> Parsed:
    """Parse the files under `paths`, in `jobs` processes; results come back in file
    order, so the output does not depend on `jobs`. Unless `lower_all`, files whose text
    holds no relevance token are not lowered; the coverage lists them."""
    return _parse(tree, discover(tree, paths), progress, jobs, store, lower_all)


def _parse(
    tree: Path,
    found: Discovery,
    progress: Progress | None,
    jobs: int,
    store: FactStore | None,
    lower_all: bool,
    prefetch: Callable[[], tuple[str, ...]] | None = None,
) -> Parsed:
    files: list[FileIR] = []
    seen: dict[str, _Seen] = {}
    prefetched: dict[str, FileIR | None] = {}
    scanned = len(found.files)
    entries = _entries(tree, found.files, lower_all, jobs, store, progress, prefetch)
    for i, (rel, d, entry) in enumerate(entries):
        if i >= scanned:
            prefetched[rel] = entry[1] if isinstance(entry[1], FileIR) else None
            continue
        seen[rel] = _seen(rel, d, entry, lower_all)
        if seen[rel].shape is not None:
            files.append(entry[1])  # type: ignore[arg-type]
    return Parsed(files, seen, found.problems, prefetched)


def _seen(rel: str, digest: str, entry: Entry, lower_all: bool) -> _Seen:
    relevant, outcome = entry
    if isinstance(outcome, str):
        return _Seen(digest, None, FileCoverage(rel, 0, 0, 0, (), outcome), outcome)
    if outcome is None or not (relevant or lower_all):
        return _Seen(digest, None, None, None)
    return _Seen(digest, outcome.shape, file_coverage(outcome), None)


def file_coverage(ir: FileIR) -> FileCoverage:
    recovered = sum(fn.status is Status.RECOVERED for fn in ir.functions)
    skipped = tuple(SkippedFunction(ir.path, s.name, s.line, s.reason) for s in ir.skipped)
    return FileCoverage(
        ir.path,
        seen=len(ir.functions) + len(ir.skipped),
        clean=len(ir.functions) - recovered,
        recovered=recovered,
        skipped=skipped,
        error=ir.error,
    )


@dataclass(frozen=True, slots=True)
class _ContextChoice:
    """Which files a run read for context, and what it asked of the scanned files on the
    way: a later run over the same headers whose scanned files answer alike chooses the
    same files, without reading every header again."""

    files: tuple[str, ...]
    # (name, the callees of its scanned definition, or None when the scan defines none)
    probes: tuple[tuple[str, tuple[str, ...] | None], ...]


def _probe(scanned: dict[str, Function], name: str) -> tuple[str, ...] | None:
    fn = scanned.get(name)
    return None if fn is None else tuple(c or "" for c in fn.callees)


def _first_wanted(api: KernelApi) -> set[str]:
    """The names the context is looked up for first (see _choose_context)."""
    return {"get_page", *api.gup.array, *api.release.release}


def _prefetch(index: DefinitionIndex, api: KernelApi, scanned: Discovery) -> tuple[str, ...]:
    """The files the context's first look-up can choose, whatever the scanned files
    define: a cold run lowers them in its worker processes, with the scanned files,
    rather than one after another once those are done."""
    found = set(scanned.files)
    return tuple(rel for rel in index.files_defining(_first_wanted(api)) if rel not in found)


def _choose_context(
    tree: Path,
    index: DefinitionIndex,
    parsed: Parsed,
    scanned: dict[str, Function],
    seen: set[str],
    api: KernelApi,
    store: FactStore | None,
) -> tuple[_ContextChoice, list[FileIR]]:
    """Headers (and mm/ files) that define what the rules need: prototypes of the GUP
    family and release primitives, get_page() and, a few levels deep, the functions it
    calls; each name the scanned files define themselves is not looked up. `seen`: the
    scanned files' paths; the files chosen are added."""
    chosen: dict[str, FileIR] = {}
    probes: dict[str, tuple[str, ...] | None] = {}
    defined = dict(scanned)
    followed = {"get_page"}
    wanted = _first_wanted(api)
    for _ in range(_CONTEXT_DEPTH):
        probes.update((n, _probe(scanned, n)) for n in wanted | followed)
        for rel in index.files_defining({n for n in wanted if n not in defined}):
            if rel in seen:
                continue
            seen.add(rel)
            ir = _context_file(tree, rel, store, parsed)
            if ir is None:
                continue
            chosen[rel] = ir
            for fn in ir.functions:
                defined.setdefault(fn.name, fn)
        callees = {c for n in followed if n in defined for c in defined[n].callees if c}
        if callees <= followed:
            break
        followed |= callees
        wanted = callees
    choice = _ContextChoice(tuple(sorted(chosen)), tuple(sorted(probes.items())))
    return choice, [chosen[rel] for rel in choice.files]


def _context_file(tree: Path, rel: str, store: FactStore | None, parsed: Parsed) -> FileIR | None:
    if rel in parsed.prefetched:
        return parsed.prefetched[rel]
    ((_rel, _d, (_relevant, ir)),) = _entries(tree, (rel,), True, 1, store, None)
    return ir if isinstance(ir, FileIR) else None


def load_context(
    tree: Path,
    parsed: Parsed,
    api: KernelApi,
    store: FactStore | None,
    index: DefinitionIndex,
) -> list[FileIR]:
    """The context files of a scan (see _choose_context); `index` holds the tree's
    definition_files(). With a store, the choice of an earlier run over the same
    headers is reused when it still holds."""
    scanned = {fn.name: fn for f in parsed.files for fn in f.functions}
    seen = {f.path for f in parsed.files}
    if store is None:
        return _choose_context(tree, index, parsed, scanned, seen, api, None)[1]
    # The scanned files count by their paths and the probes' answers; the other files
    # the search reads, by their content.
    searched = [rel for rel in index.files if rel not in seen]
    key = "context:" + _content_key((store.salt, sorted(seen)), _digests(tree, searched, store))
    memo = store.result(key)
    if isinstance(memo, _ContextChoice) and all(
        _probe(scanned, n) == answer for n, answer in memo.probes
    ):
        found = [_context_file(tree, rel, store, parsed) for rel in memo.files]
        return [ir for ir in found if ir is not None]
    choice, context = _choose_context(tree, index, parsed, scanned, seen, api, store)
    store.put_result(key, choice)
    return context


def _edge(other: Function, site: CallSite, locks: LockAnalysis) -> CallEdge:
    """The call `site` seen from the function at its other end, `other`."""
    held = tuple(sorted(f"{c}:{n}" for c, n in locks.held_at(site.caller, site.node)))
    loc = site.call.loc
    return CallEdge(other.name, other.path, Location(site.caller.path, loc.line, loc.col), held)


def function_facts(
    program: Program, locks: LockAnalysis, findings: list[Finding]
) -> tuple[FunctionFacts, ...]:
    """Callers, callees and lock state of every function that appears in a trace."""
    wanted = {(s.location.path, s.function, s.location.line) for f in findings for s in f.trace}
    by_path: dict[str, list[Function]] = {}
    for ir in [*program.files.values(), *program.context.values()]:
        by_path[ir.path] = ir.functions
    chosen: dict[str, Function] = {}
    for path, name, line in wanted:
        for fn in by_path.get(path, []):
            if fn.name == name and fn.loc.line <= line <= fn.end_line:
                chosen[fn.key] = fn
    out = []
    for key in sorted(chosen):
        fn = chosen[key]
        held_by_line: dict[int, tuple[str, ...]] = {}
        for n in fn.cfg.reverse_postorder():
            line = fn.cfg.instrs[n].loc.line
            if n not in (fn.cfg.ENTRY, fn.cfg.EXIT) and line not in held_by_line:
                held_by_line[line] = tuple(sorted(f"{c}:{x}" for c, x in locks.held_at(fn, n)))
        out.append(
            FunctionFacts(
                name=fn.name,
                location=Location(fn.path, fn.loc.line, fn.loc.col),
                end_line=fn.end_line,
                callers=tuple(_edge(s.caller, s, locks) for s in program.callers(fn)),
                callees=tuple(_edge(t, s, locks) for s, ts in program.callees(fn) for t in ts),
                callers_known=not program.may_have_unknown_callers(fn),
                entry_locks=tuple(sorted(f"{c}:{x}" for c, x in locks.entry_locks(fn))),
                held_by_line=tuple(sorted(held_by_line.items())),
            )
        )
    return tuple(out)


def _with_skipped(cov: Coverage, skipped: list[SkippedFunction]) -> Coverage:
    """Coverage with the functions the analyses gave up on (their budget ran out)."""
    if not skipped:
        return cov
    return dataclasses.replace(
        cov,
        files=tuple(
            dataclasses.replace(
                f, skipped=f.skipped + tuple(s for s in skipped if s.path == f.path)
            )
            for f in cov.files
        ),
    )


def _content_key(head: object, digests: dict[str, str]) -> str:
    """Hash of `head` (its repr) and of the path and content hash of each file in
    `digests`: the store key of something computed from exactly those."""
    h = hashlib.blake2b(repr(head).encode(), digest_size=16)
    for rel, d in sorted(digests.items()):
        h.update(f"{rel}\0{d}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class _Memo:
    """A run's result and what it read. The analyses read every file's shape (shape_of)
    but only some function bodies: a later run over the same paths whose changed files
    keep their shapes, and the texts of the bodies read, has the same findings, moved
    with the functions they are in."""

    files: dict[str, _Seen]  # the scanned files
    definitions: dict[str, str]  # content hashes of the other files context can come from
    result: RunResult  # without coverage and diagnostics: `files` holds them
    analysis_skipped: tuple[SkippedFunction, ...]


def _reuse(
    tree: Path,
    found: Discovery,
    digests: dict[str, str],
    outside: dict[str, str],
    memo: _Memo,
    jobs: int,
    store: FactStore,
    lower_all: bool,
) -> tuple[_Memo, RunResult] | None:
    """`memo` brought up to date with the files as they are now, and its result; or
    None when a change can reach what its analyses read: a shape changed, the text of a
    body the analyses read changed, or a file the context can come from (`outside`: the
    definition files not scanned, with their content hashes) changed. The lines of the
    result move with the functions the analyses read."""
    if outside != memo.definitions:
        return None
    changed = tuple(rel for rel in found.files if digests.get(rel, "") != memo.files[rel].digest)
    files = dict(memo.files)
    moves: dict[str, list[Move]] = {}
    for rel, d, entry in _entries(tree, changed, lower_all, jobs, store, None):
        now, before = _seen(rel, d, entry, lower_all), memo.files[rel]
        if now.shape != before.shape:
            return None
        moves[rel] = []  # a line of the result in this file lies in a function moved
        if before.read:
            assert isinstance(entry[1], FileIR)  # it has a shape
            moved = _moved(before.read, entry[1])
            if moved is None:
                return None
            moves[rel], read = moved
            now = dataclasses.replace(now, read=read)
        files[rel] = now
    shift = LineShift(moves)
    try:
        bare = shift.result(memo.result)
        skipped = tuple(map(shift.skipped, memo.analysis_skipped))
    except Unplaced:
        return None
    result = dataclasses.replace(
        bare,
        tree=str(tree),
        coverage=_with_skipped(_coverage(files), list(skipped)),
        diagnostics=tuple(_diagnostics(found.problems, files)),
        kernel_version=kernel_version(tree),
    )
    return _Memo(files, memo.definitions, bare, skipped), result


def _moved(read: tuple[_Read, ...], ir: FileIR) -> tuple[list[Move], tuple[_Read, ...]] | None:
    """How the functions `read` moved in `ir`, and where they are now; None when one
    of them has another text now, or starts at another column (which moves the columns
    of its first line). One text is one body: lowering reads nothing of a file beyond
    a function's definition but its annotations, which are part of its shape, and
    tree-sitter parses a definition alike wherever it stands in a file."""
    now = {fn.key: fn for fn in ir.functions}
    moves, there = [], []
    for r in read:
        fn = now[r.key]  # the shape, which holds the keys, is unchanged
        if fn.text_digest != r.text_digest or fn.loc.col != r.column:
            return None
        moves.append(Move(r.line, r.end_line, fn.loc.line - r.line))
        there.append(_Read.of(fn))
    return moves, tuple(there)


def scan(
    tree: Path,
    paths: list[str] | None = None,
    refcount_model: str | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    store: FactStore | None = None,
    lower_all: bool = False,
    functions: bool = True,
    retain: list[object] | None = None,
) -> RunResult:
    """Analyze `paths` of `tree`. With a `store`, a run whose inputs all match an earlier
    one returns its result; a run whose changes cannot reach what the last run over the
    same paths read returns that run's findings (see _Memo); and files read before are
    not lowered again. Unless `lower_all`, files that hold no relevance token of the
    rules are not lowered. Unless `functions`, the facts of the functions in traces
    (RunResult.functions, what the HTML report draws) are left out. `paths` None scans
    DEFAULT_PATHS; an empty list scans nothing. The program's IR is appended to
    `retain`, when given: a caller about to exit keeps it there, not to free it object
    by object (see cli.entry)."""
    paths = list(DEFAULT_PATHS if paths is None else paths)
    discovery = discover(tree, paths)
    definitions = definition_files(tree)

    def analyze(store: FactStore | None) -> tuple[RunResult, Parsed, list[SkippedFunction]]:
        chosen = (refcount_model, lower_all, functions)
        out = _analyze(tree, paths, discovery, definitions, chosen, progress, jobs, store)
        if retain is not None:
            retain.append(out[1])
        return out

    if store is None:
        return analyze(None)[0]
    # One scan sees one version of each file, and stats it once.
    with store.snapshot():
        options = (paths, refcount_model, lower_all)
        digests = _digests(tree, [*discovery.files, *definitions, "Makefile"], store)
        key = _content_key((store.salt, discovery.problems, options), digests)
        hit = store.result(key)
        if isinstance(hit, RunResult) and (hit.has_functions or not functions):
            return dataclasses.replace(hit, tree=str(tree))
        scanned = set(discovery.files)
        outside = {rel: digests.get(rel, "") for rel in definitions if rel not in scanned}
        memo_key = "memo:" + _content_key((store.salt, discovery, options), {})
        memo = store.result(memo_key)
        reused = None
        if isinstance(memo, _Memo) and (memo.result.has_functions or not functions):
            reused = _reuse(tree, discovery, digests, outside, memo, jobs, store, lower_all)
        if reused is not None:
            memo, result = reused
        else:
            result, parsed, skipped = analyze(store)
            bare = dataclasses.replace(result, coverage=Coverage(()), diagnostics=())
            memo = _Memo(_read_marks(parsed), outside, bare, tuple(skipped))
        store.put_result(key, result)
        store.put_result(memo_key, memo)
        return result


def _read_marks(parsed: Parsed) -> dict[str, _Seen]:
    """The scanned files' records, with the functions whose bodies an analysis read."""
    read = {
        f.path: tuple(_Read.of(fn) for fn in f.functions if fn.body_loaded) for f in parsed.files
    }
    return {
        rel: dataclasses.replace(s, read=read[rel]) if read.get(rel) else s
        for rel, s in parsed.seen.items()
    }


def _analyze(
    tree: Path,
    paths: list[str],
    discovery: Discovery,
    definitions: list[str],
    options: tuple[str | None, bool, bool],
    progress: Progress | None,
    jobs: int,
    store: FactStore | None,
) -> tuple[RunResult, Parsed, list[SkippedFunction]]:
    """Parse, analyze and judge; with the functions the analyses gave up on. `options`
    are scan()'s refcount_model, lower_all and functions."""
    refcount_model, lower_all, with_functions = options
    api = load_api()
    rules = load_rules()
    index = DefinitionIndex(tree, definitions)
    parsed = _parse(
        tree, discovery, progress, jobs, store, lower_all, lambda: _prefetch(index, api, discovery)
    )
    if progress is not None:
        progress("reading the tree's headers")
    context = load_context(tree, parsed, api, store, index)
    program = Program(parsed.files, context)
    locks = LockAnalysis(program, api.locks)
    model = refmodel.detect(program, api, locks, refcount_model)
    findings: list[Finding] = []
    outcomes = []
    analysis_skipped: list[SkippedFunction] = []
    diagnostics = parsed.diagnostics
    ownership: Ownership | None = None
    events: list[Event] = []
    for rule in rules:
        if progress is not None:
            progress(f"checking {rule.id}")
        if rule.analysis == "ownership":
            if ownership is None:
                ownership = Ownership(program, api)
                events = ownership.run()
                analysis_skipped.extend(
                    SkippedFunction(fn.path, fn.name, fn.loc.line, f"ownership analysis: {why}")
                    for fn, why in ownership.skipped
                    if fn.path in program.files
                )
            found, outcome = release.check(rule, events, ownership.acquisitions)
            findings.extend(found)
            outcomes.append(outcome)
            continue
        provenance = Provenance(program, api.gup, {s: api.refs.reference[s] for s in rule.sinks})
        sites = provenance.run()
        analysis_skipped.extend(
            SkippedFunction(fn.path, fn.name, fn.loc.line, f"{rule.id} analysis: {why}")
            for fn, why in provenance.skipped
        )
        found, outcome = TailRefRace(rule, program, api, locks, model, provenance.arrivals).check(
            sites
        )
        findings.extend(found)
        outcomes.append(outcome)
    result = RunResult(
        functions=function_facts(program, locks, findings) if with_functions else (),
        has_functions=with_functions,
        tool_version=__version__,
        tree=str(tree),
        paths=tuple(paths),
        refcount_model=model,
        coverage=_with_skipped(parsed.coverage, analysis_skipped),
        findings=tuple(sorted(findings, key=lambda f: f.sort_key)),
        outcomes=tuple(outcomes),
        kernel_version=kernel_version(tree),
        diagnostics=tuple(diagnostics),
    )
    return result, parsed, analysis_skipped
