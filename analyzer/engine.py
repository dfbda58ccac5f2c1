"""The pipeline: discover, parse, model the program, analyze, judge; returns plain data."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from analyzer import __version__
from analyzer.dataflow.locks import LockAnalysis
from analyzer.dataflow.ownership import Event, Ownership
from analyzer.dataflow.provenance import Provenance
from analyzer.frontend.parse import InputError, parse_file
from analyzer.ir import FileIR, Function, Status
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
from analyzer.program.tree import DefinitionIndex, discover, kernel_version
from analyzer.rules import refmodel, release
from analyzer.rules.loader import KernelApi, load_api, load_rules
from analyzer.rules.tail_ref_race import TailRefRace

DEFAULT_PATHS = ("mm", "fs/direct-io.c")
# How many levels of callees of get_page() are looked up in the tree's headers and mm/.
_CONTEXT_DEPTH = 4

Progress = Callable[[str], None]


@dataclass(slots=True)
class Parsed:
    files: list[FileIR]
    coverage: Coverage
    diagnostics: list[str]


def _parse_one(job: tuple[Path, str]) -> FileIR | str:
    """Parse one file: its IR, or the InputError message (picklable for worker processes)."""
    tree, rel = job
    try:
        return parse_file(tree / rel, rel)
    except InputError as e:
        return str(e)


def parse_paths(
    tree: Path, paths: list[str], progress: Progress | None = None, jobs: int = 1
) -> Parsed:
    """Parse the files under `paths`, in `jobs` processes; results come back in file
    order, so the output does not depend on `jobs`."""
    found = discover(tree, paths)
    diagnostics = list(found.problems)
    files: list[FileIR] = []
    cov: list[FileCoverage] = []
    work = [(tree, rel) for rel in found.files]
    if jobs > 1 and len(work) > 1:
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        results: Iterator[FileIR | str] = pool.map(_parse_one, work, chunksize=8)
    else:
        pool = None
        results = map(_parse_one, work)
    try:
        for i, (rel, res) in enumerate(zip(found.files, results, strict=True)):
            if progress is not None and i % 50 == 0:
                progress(f"parsing {i}/{len(found.files)} {rel}")
            if isinstance(res, str):
                diagnostics.append(res)
                cov.append(FileCoverage(rel, 0, 0, 0, (), res))
            else:
                files.append(res)
                cov.append(file_coverage(res))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return Parsed(files, Coverage(tuple(cov)), diagnostics)


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


def load_context(tree: Path, files: list[FileIR], api: KernelApi) -> list[FileIR]:
    """Headers (and mm/ files) of the tree that define what the rules need: prototypes of
    the GUP family, get_page() and, a few levels deep, the functions it calls."""
    index = DefinitionIndex(tree)
    context: dict[str, FileIR] = {}
    seen = {f.path for f in files}
    defined = {fn.name: fn for f in files for fn in f.functions}
    followed = {"get_page"}
    wanted = followed | set(api.gup.array) | set(api.release.release)
    for _ in range(_CONTEXT_DEPTH):
        for rel in index.files_defining({n for n in wanted if n not in defined}):
            if rel in seen:
                continue
            seen.add(rel)
            try:
                ir = parse_file(tree / rel, rel)
            except InputError:
                continue
            context[rel] = ir
            for fn in ir.functions:
                defined.setdefault(fn.name, fn)
        callees = {
            c.callee for n in followed if n in defined for _i, c in defined[n].calls() if c.callee
        }
        if callees <= followed:
            break
        followed |= callees
        wanted = callees
    return [context[p] for p in sorted(context)]


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
    return Coverage(
        tuple(
            dataclasses.replace(
                f, skipped=f.skipped + tuple(s for s in skipped if s.path == f.path)
            )
            for f in cov.files
        )
    )


def scan(
    tree: Path,
    paths: list[str] | None = None,
    refcount_model: str | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
) -> RunResult:
    paths = list(paths or DEFAULT_PATHS)
    api = load_api()
    rules = load_rules()
    parsed = parse_paths(tree, paths, progress, jobs)
    if progress is not None:
        progress("reading the tree's headers")
    context = load_context(tree, parsed.files, api)
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
    return RunResult(
        functions=function_facts(program, locks, findings),
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
