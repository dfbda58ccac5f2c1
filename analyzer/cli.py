"""The krefaudit command line: the user-facing commands, nothing else."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from analyzer import __version__, engine, kbuild, patchmode
from analyzer.dataflow.locks import LockAnalysis
from analyzer.factstore import FactStore, StoreError, default_dir
from analyzer.fsutil import write_atomically
from analyzer.model import Finding
from analyzer.program.model import Program
from analyzer.program.tree import TreeError
from analyzer.report import callgraph as cg
from analyzer.report.json_report import coverage_dict, render_json, result_dict
from analyzer.report.sarif import render_sarif
from analyzer.report.text import coverage_lines, finding_lines, render_text
from analyzer.rules.loader import RuleError, load_api, load_rules
from analyzer.triage import Triage, read_baseline, read_suppressions, render_baseline


class Exit:
    """Exit codes: documented in --help and the README."""

    CLEAN = 0
    FINDINGS = 1
    INPUT_ERROR = 2  # usage errors, unusable tree or rule files, files that could not be read
    INTERNAL_ERROR = 3
    INTERRUPTED = 130  # SIGINT or SIGTERM: nothing was written, earlier reports are intact


MODELS = ("split-tail", "locked-tail", "head-only", "folio")


def _fail(message: str, code: int = Exit.INPUT_ERROR) -> NoReturn:
    click.echo(f"krefaudit: error: {message}", err=True)
    sys.exit(code)


def generated_at() -> str:
    """The report's date: SOURCE_DATE_EPOCH when set (reproducible reports), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    )
    return when.strftime("%Y-%m-%d %H:%M UTC")


class Progress:
    """Progress lines on stderr, only for runs longer than a second and never with -q."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet and time.monotonic() - self.start > 1.0:
            click.echo(f"krefaudit: {message}", err=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _guard(action: Callable[[], int]) -> NoReturn:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = action()
    except (TreeError, RuleError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; no report was written, earlier ones are intact", Exit.INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - the one place that turns bugs into exit 3
        import traceback

        traceback.print_exc()
        _fail(f"internal error: {e.__class__.__name__}: {e}", Exit.INTERNAL_ERROR)
    sys.exit(code)


def _warn(message: str) -> None:
    click.echo(f"krefaudit: warning: {message}", err=True)


@contextmanager
def _fact_store(cache_dir: Path | None, no_cache: bool) -> Iterator[FactStore | None]:
    """The fact store of --cache (default: the user's cache folder), or None with
    --no-cache or when it cannot be used (said on stderr; the run goes on without it)."""
    if no_cache:
        yield None
        return
    try:
        store = FactStore(cache_dir or default_dir(), _warn)
    except (StoreError, OSError, sqlite3.Error) as e:
        _warn(f"cache not used: {e}")
        yield None
        return
    try:
        yield store
    finally:
        store.close()


def cache_opts(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option("--no-cache", is_flag=True, help="Neither read nor write the fact store.")(f)
    return click.option(
        "--cache",
        "cache_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Fact store folder: facts and results of earlier runs [default: {default_dir()}].",
    )(f)


tree_arg = click.argument("tree", type=click.Path(file_okay=False, path_type=Path), metavar="TREE")
paths_arg = click.argument("paths", nargs=-1, metavar="[PATH]...")
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
jobs_opt = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="Parse files in this many processes; the output does not depend on it.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="krefaudit")
def main() -> None:
    """krefaudit: static analysis of Linux kernel page reference counting.

    TREE is the root of a kernel source tree; PATHs are files or directories inside it
    (default: mm fs/direct-io.c).

    \b
    Exit codes:
      0  no findings
      1  findings reported
      2  usage or input error (bad tree, path, rule file; unreadable source files)
      3  internal error
      130  interrupted (SIGINT, SIGTERM): no report written
    """
    # A run builds millions of small objects that live until it ends: the IR, loaded from
    # workers or the fact store, and the analyses' facts. None of them is in a reference
    # cycle (tests/test_robustness.py checks that a scan leaves no cyclic garbage), so
    # reference counting frees all there is to free, and the cycle collector only walks
    # them again and again: at its default thresholds a third of a warm whole-tree run.
    # The workers are forked and inherit this.
    gc.disable()


# What the command's scans built, kept to the end of the process when it runs as the
# console script (entry()); None when main() is called in-process (tests).
_retained: list[object] | None = None


def entry() -> NoReturn:
    """The console script: main(), then an exit that frees nothing, as mypy's does. A
    whole tree's IR is millions of objects; freeing them one by one, as a normal exit
    does, took a tenth of a run (0.5 s of 4.5 s after a change to mm/gup.c)."""
    global _retained
    _retained = []
    try:
        main()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # a reader that went away (krefaudit scan ... | head)
        pass
    os._exit(code)


@main.command()
@tree_arg
@paths_arg
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="What goes to standard output.",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write JSON here.")
@click.option(
    "--sarif", "sarif_out", type=click.Path(path_type=Path), help="Also write SARIF 2.1.0 here."
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(file_okay=False, path_type=Path),
    is_flag=False,
    flag_value="reports/html",
    help="Also write the HTML audit report into this folder (alone: reports/html).",
)
@click.option(
    "--compare",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A previous JSON result: the HTML report marks findings new, unchanged or fixed.",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report only findings whose fingerprint is not in this file.",
)
@click.option(
    "--suppressions",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of suppressed findings, each with a reason.",
)
@click.option("--ignore", multiple=True, metavar="RULE", help="Do not report RULE (repeatable).")
@click.option(
    "--refcount-model",
    type=click.Choice(MODELS),
    help="Use this refcount model instead of reading it from the tree's get_page().",
)
@click.option(
    "--lower-all",
    is_flag=True,
    help="Lower every file, also those that name nothing the rules track.",
)
@cache_opts
@jobs_opt
@quiet_opt
def scan(
    tree: Path,
    paths: tuple[str, ...],
    fmt: str,
    json_out: Path | None,
    sarif_out: Path | None,
    html_out: Path | None,
    compare: Path | None,
    baseline: Path | None,
    suppressions: Path | None,
    ignore: tuple[str, ...],
    refcount_model: str | None,
    lower_all: bool,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Analyze PATHs of TREE and report findings with their evidence."""

    def run() -> int:
        known = {r.id for r in load_rules()}
        for rule_id in ignore:
            if rule_id not in known:
                _fail(f"--ignore {rule_id}: no such rule; see `krefaudit rules list`")
        triage = Triage(
            read_baseline(baseline) if baseline is not None else frozenset(),
            read_suppressions(suppressions) if suppressions is not None else (),
            frozenset(ignore),
        )
        with _fact_store(cache_dir, no_cache) as store:
            # Only the HTML report draws the lock state of the functions in traces.
            result = engine.scan(
                tree,
                list(paths) or None,
                refcount_model,
                Progress(quiet),
                jobs,
                store,
                lower_all,
                functions=html_out is not None,
                retain=_retained,
            )
        kept, left_out = triage.split(result.findings)
        result = dataclasses.replace(result, findings=kept, left_out=left_out)
        root_uri = tree.resolve().as_uri() + "/"
        renderers = {
            "text": lambda: render_text(result),
            "json": lambda: render_json(result),
            "sarif": lambda: render_sarif(result, load_rules(), root_uri),
        }
        text = renderers[fmt]()
        if json_out is not None:
            write_atomically(json_out, renderers["json"]())
        if sarif_out is not None:
            write_atomically(sarif_out, renderers["sarif"]())
        if html_out is not None:
            # Imported here: jinja2 and the view cost 30 ms, a tenth of a warm run.
            from analyzer.report.html.writer import write_report

            write_report(result, tree, html_out, generated_at(), compare)
        click.echo(text, nl=False)
        if result.diagnostics:
            for d in result.diagnostics:
                click.echo(f"krefaudit: error: {d}", err=True)
            return Exit.INPUT_ERROR
        return Exit.FINDINGS if result.findings else Exit.CLEAN

    _guard(run)


@main.command()
@tree_arg
@paths_arg
@click.option(
    "--format", "fmt", type=click.Choice(["dot", "json"]), default="dot", show_default=True
)
@click.option("--function", "around", help="Only the neighbourhood of this function.")
@click.option("--depth", default=2, show_default=True, help="Calls away from --function.")
@click.option(
    "--locks/--no-locks",
    default=True,
    show_default=True,
    help="Label each call with the locks held on every path to it.",
)
@cache_opts
@quiet_opt
def callgraph(
    tree: Path,
    paths: tuple[str, ...],
    fmt: str,
    around: str | None,
    depth: int,
    locks: bool,
    cache_dir: Path | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Print the call graph of PATHs: direct calls and calls through function pointers
    (dashed), each labelled with where it is and what is held there."""

    def run() -> int:
        # IR from the store reads its bodies from it: the edges are drawn while it is open.
        with _fact_store(cache_dir, no_cache) as store:
            parsed = engine.parse_paths(
                tree, list(paths) or list(engine.DEFAULT_PATHS), Progress(quiet), store=store
            )
            program = Program(parsed.files)
            analysis = LockAnalysis(program, load_api().locks) if locks else None
            es = cg.edges(program, analysis, around, depth)
        click.echo(cg.render_dot(es) if fmt == "dot" else cg.render_json(es), nl=False)
        for d in parsed.diagnostics:
            click.echo(f"krefaudit: error: {d}", err=True)
        return Exit.INPUT_ERROR if parsed.diagnostics else Exit.CLEAN

    _guard(run)


@main.command()
@tree_arg
@paths_arg
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@cache_opts
@jobs_opt
@quiet_opt
def coverage(
    tree: Path,
    paths: tuple[str, ...],
    fmt: str,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Report what the front end lowered of every file: functions seen, clean, recovered,
    skipped."""

    def run() -> int:
        with _fact_store(cache_dir, no_cache) as store:
            parsed = engine.parse_paths(
                tree, list(paths) or list(engine.DEFAULT_PATHS), Progress(quiet), jobs, store
            )
        if fmt == "json":
            doc = coverage_dict(parsed.coverage)
            doc["diagnostics"] = parsed.diagnostics
            click.echo(json.dumps(doc, indent=2))
        else:
            for f in parsed.coverage.files:
                state = (
                    f"error: {f.error}"
                    if f.error
                    else (
                        f"{f.seen} seen, {f.clean} clean, {f.recovered} recovered,"
                        f" {len(f.skipped)} skipped"
                    )
                )
                click.echo(f"{f.path}: {state}")
            for line in coverage_lines(parsed.coverage, parsed.diagnostics):
                click.echo(f"krefaudit: {line}")
        return Exit.INPUT_ERROR if parsed.diagnostics else Exit.CLEAN

    _guard(run)


def _report_comparison(cmp: patchmode.Comparison, fmt: str) -> int:
    """Print new and fixed findings; exit 1 only for new ones."""
    if fmt == "json":
        doc = result_dict(dataclasses.replace(cmp.head, findings=cmp.new))
        doc["fixed"] = result_dict(dataclasses.replace(cmp.base, findings=cmp.fixed))["findings"]
        doc["touched"] = list(cmp.touched)
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for line in finding_lines(cmp.new):
            click.echo(line)
        for f in cmp.fixed:
            loc = f.location
            click.echo(f"krefaudit: fixed: {loc.path}:{loc.line}: {f.message} [{f.rule_id}]")
        click.echo(
            f"krefaudit: {len(cmp.new)} new, {len(cmp.fixed)} fixed finding(s);"
            f" {len(cmp.touched)} file(s) touched; refcount model {cmp.head.refcount_model.name}"
        )
    return Exit.FINDINGS if cmp.new else Exit.CLEAN


@main.command("check-range")
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path), metavar="REPO")
@click.argument("rev_range", metavar="BASE..HEAD")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@cache_opts
@jobs_opt
@quiet_opt
def check_range(
    repo: Path,
    rev_range: str,
    fmt: str,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Findings that BASE..HEAD of the git repository REPO introduces (and fixes)."""

    def run() -> int:
        with _fact_store(cache_dir, no_cache) as store:
            cmp = patchmode.check_range(repo, rev_range, jobs, Progress(quiet), store)
        return _report_comparison(cmp, fmt)

    _guard(run)


@main.command("check-patch")
@tree_arg
@click.argument(
    "patches",
    nargs=-1,
    required=True,
    metavar="PATCH...",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@cache_opts
@jobs_opt
@quiet_opt
def check_patch(
    tree: Path,
    patches: tuple[Path, ...],
    fmt: str,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Findings that PATCHes (git format-patch or git diff output, applied in order with
    patch -p1 to a hard-linked copy of the tree) introduce in TREE (and fix)."""

    def run() -> int:
        with _fact_store(cache_dir, no_cache) as store:
            cmp = patchmode.check_patch(tree, list(patches), jobs, Progress(quiet), store)
        return _report_comparison(cmp, fmt)

    _guard(run)


@main.command(
    "kbuild-check",
    # Compiler flags like -fshort-wchar would read as clusters of short options, -h among
    # them: this command has no short options at all, and its own options come first.
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["--help"],
    },
)
@click.option(
    "--precise",
    is_flag=True,
    help="Preprocess with the real flags (gcc -E) and analyze the expanded code.",
)
@click.option("--werror", is_flag=True, help="Exit 1 when there are findings.")
@click.option("--refcount-model", type=click.Choice(MODELS), help="As for scan.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kbuild_check(
    precise: bool, werror: bool, refcount_model: str | None, args: tuple[str, ...]
) -> None:
    """Check one file as kbuild's CHECK program: `make C=1 CHECK="krefaudit kbuild-check"`.
    Accepts the flags sparse receives (-D, -I, -include, -W..., -m..., -f..., the file)."""

    def run() -> int:
        try:
            inv = kbuild.parse_args(list(args))
        except ValueError as e:
            _fail(str(e))
        compiler = os.environ.get("KREFAUDIT_CC") or os.environ.get("CC") or "gcc"
        try:
            result = kbuild.check(inv, Path.cwd(), precise, compiler, refcount_model)
        except ValueError as e:
            _fail(str(e))
        for line in finding_lines(result.findings, with_locks=False):
            click.echo(line)
        for d in result.diagnostics:
            click.echo(f"krefaudit: error: {d}", err=True)
        return Exit.FINDINGS if werror and result.findings else Exit.CLEAN

    _guard(run)


@main.group()
def baseline() -> None:
    """Record today's findings so that later scans report only new ones."""


@baseline.command("create")
@tree_arg
@paths_arg
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@cache_opts
@quiet_opt
def baseline_create(
    tree: Path,
    paths: tuple[str, ...],
    output: Path,
    cache_dir: Path | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Write the fingerprints of the findings of PATHs to OUTPUT (which must not exist)."""

    def run() -> int:
        if output.exists():
            _fail(f"{output}: exists; use `krefaudit baseline update`")
        findings = _baseline_findings(tree, paths, cache_dir, no_cache, quiet)
        write_atomically(output, render_baseline(findings))
        click.echo(f"krefaudit: {output}: {len(findings)} fingerprint(s)")
        return Exit.CLEAN

    _guard(run)


def _baseline_findings(
    tree: Path, paths: tuple[str, ...], cache_dir: Path | None, no_cache: bool, quiet: bool
) -> tuple[Finding, ...]:
    """The findings a baseline records: a scan with the default model, every rule."""
    with _fact_store(cache_dir, no_cache) as store:
        result = engine.scan(
            tree,
            list(paths) or None,
            None,
            Progress(quiet),
            store=store,
            functions=False,
            retain=_retained,
        )
    return result.findings


@baseline.command("update")
@tree_arg
@paths_arg
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@cache_opts
@quiet_opt
def baseline_update(
    tree: Path,
    paths: tuple[str, ...],
    output: Path,
    cache_dir: Path | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Rewrite OUTPUT with the fingerprints of today's findings: new ones are added,
    fixed ones dropped."""

    def run() -> int:
        old = read_baseline(output) if output.exists() else frozenset()
        findings = _baseline_findings(tree, paths, cache_dir, no_cache, quiet)
        new = {f.fingerprint for f in findings}
        write_atomically(output, render_baseline(findings))
        click.echo(
            f"krefaudit: {output}: {len(new - old)} added, {len(old - new)} dropped,"
            f" {len(new & old)} kept"
        )
        return Exit.CLEAN

    _guard(run)


@main.group()
def rules() -> None:
    """List the rules and show their documentation."""


@rules.command("list")
def rules_list() -> None:
    """One line per rule: id, severity, confidence, name."""
    _guard(lambda: _rules_list())


def _rules_list() -> int:
    for r in load_rules():
        click.echo(f"{r.id}\t{r.severity.value}\t{r.confidence.value}\t{r.name}")
    return Exit.CLEAN


@rules.command("show")
@click.argument("rule_id")
def rules_show(rule_id: str) -> None:
    """The documentation of RULE_ID: what, why, example, instead, references."""

    def run() -> int:
        found = [r for r in load_rules() if r.id == rule_id]
        if not found:
            _fail(f"no rule {rule_id!r}; see `krefaudit rules list`")
        r = found[0]
        d = r.docs
        click.echo(
            f"{r.id}: {r.name}\nseverity: {r.severity.value}, confidence: "
            f"{r.confidence.value}\nfile: {r.path}\n"
        )
        for title, body in (
            ("What it does", d.what),
            ("Why it is bad", d.why),
            ("Example", d.example),
            ("Instead", d.instead),
        ):
            click.echo(f"{title}\n{'-' * len(title)}\n{body}\n")
        click.echo("References\n----------")
        for ref in d.references:
            click.echo(f"- {ref}")
        return Exit.CLEAN

    _guard(run)
