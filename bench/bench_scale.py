"""Benchmark krefaudit at scale: cold and warm scans beside tree-sitter's bare parse and spatch.

Not a test. Run from the checkout:

    PYTHONPATH=. python bench/bench_scale.py [TREE] [--size mm|fs|whole] [--repeat R] [-j N]

TREE defaults to $KREFAUDIT_TREE_6_1_FULL, else /work/trees/full/linux-source-6.1 (a whole
unpacked linux-source-6.1). The files are the ones `krefaudit scan` discovers under the
size's paths (.c and .h): mm + fs/direct-io.c (default), all of fs, or the whole tree.
All tools run on that same list; each repeat runs them in alternating order:

  floor        tree-sitter parse only (analyzer.frontend.parse.parse_only) of the file
               bytes, read into memory first: in this process, and in N forked processes
  krefaudit    cold: `python -m analyzer scan TREE PATHS -j N -q --json ... --no-cache`
               in a subprocess; wall time from start to exit
               warm: the same with `--cache DIR`, a fact store of the benchmark's own
               filled by one untimed run first: with no change, and with one file
               changed (each --changed FILE in turn, default the first .c file of the
               size, gets a comment line inserted at its top, so that every line of it
               moves, a different comment each repeat; restored after each run), or
               with one file's function bodies edited (each --edited FILE in turn gets
               such a comment line as the first line of every function body that opens
               with a `{` line of its own, kernel style: the analyses run again if they
               read one of those bodies)
  spatch       Coccinelle with bench/tail-ref-race.cocci (a rough approximation of the
               tail-ref-race rule), `--jobs N --very-quiet --no-includes`, one file a group

Peak RSS of a subprocess is the ru_maxrss that wait4() returns for it (its largest single
process, workers included) in bench/peak_rss.py, a small process that forks it (forked
from here, it would count this process's file bytes), and the sum over its process group
sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analyzer.frontend.parse import parse_only  # noqa: E402
from analyzer.program.tree import discover  # noqa: E402
from bench.bench_frontend import Files, analyzer_env, floor_pass, load  # noqa: E402

DEFAULT_TREE = "/work/trees/full/linux-source-6.1"
SIZES: dict[str, list[str]] = {
    "mm": ["mm", "fs/direct-io.c"],
    "fs": ["fs"],
    "whole": ["."],
}
COCCI = ROOT / "bench" / "tail-ref-race.cocci"
PEAK_RSS = ROOT / "bench" / "peak_rss.py"
SAMPLE_EVERY = 0.2  # seconds between samples of a process group's resident memory
PAGE = os.sysconf("SC_PAGE_SIZE")
SHOW_SITES = 20  # spatch's reported sites listed at the end

# The file bytes for the forked floor workers: set before the pool forks, so each worker
# inherits them instead of receiving them pickled.
_FILES: Files = []


def _floor_chunk(bounds: tuple[int, int]) -> None:
    for _, data in _FILES[bounds[0] : bounds[1]]:
        parse_only(data)


def floor_parallel(files: Files, jobs: int) -> float:
    """Parse-only of `files` in `jobs` forked processes; the pool's start-up is timed too,
    as krefaudit's is."""
    global _FILES
    _FILES = files
    step = 8  # krefaudit's chunksize
    chunks = [(i, min(i + step, len(files))) for i in range(0, len(files), step)]
    gc.collect()
    start = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        for _ in pool.map(_floor_chunk, chunks):
            pass
    return time.perf_counter() - start


def floor_serial(files: Files) -> float:
    gc.collect()
    start = time.perf_counter()
    floor_pass(files)
    return time.perf_counter() - start


@dataclass
class Run:
    wall: float
    maxrss_kib: int  # wait4(): the largest single process of the child's tree
    group_peak_kib: int  # sampled sum of resident memory over the child's process group
    returncode: int
    stdout: str
    stderr: str


def busy_cpu_seconds() -> float:
    """Non-idle CPU time of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (and theirs)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def _group_rss_kib(pgid: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            # Fields after the parenthesized command: state ppid pgrp ...
            if int(stat[stat.rindex(b")") + 2 :].split()[2]) != pgid:
                continue
            with open(f"/proc/{entry.name}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE // 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run `cmd` in its own process group, through bench/peak_rss.py; its wall time and
    peak RSS (its own, from wait4() in that small parent, and sampled)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        wrapped = [sys.executable, "-S", str(PEAK_RSS), report.name, *cmd]
        proc = subprocess.Popen(
            wrapped, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(SAMPLE_EVERY):
                peak = max(peak, _group_rss_kib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        done.set()
        sampler.join()
        measured = json.loads(report.read() or "{}")
        out.seek(0)
        err.seek(0)
        if "wall" not in measured:
            sys.exit(f"bench_scale: {PEAK_RSS.name} failed ({proc.returncode}): {cmd}")
        return Run(
            measured["wall"],
            measured["maxrss_kib"],
            max(peak, measured["maxrss_kib"]),
            measured["returncode"],
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


@dataclass
class Tool:
    label: str
    times: list[float] = field(default_factory=list)
    maxrss_kib: int = 0
    group_peak_kib: int = 0
    note: str = ""

    def add(self, run: Run) -> None:
        self.times.append(run.wall)
        self.maxrss_kib = max(self.maxrss_kib, run.maxrss_kib)
        self.group_peak_kib = max(self.group_peak_kib, run.group_peak_kib)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def krefaudit_run(
    tree: Path, paths: list[str], jobs: int, out_json: Path, cache: Path | None
) -> Run:
    env = analyzer_env()
    cmd = [sys.executable, "-m", "analyzer", "scan", str(tree), *paths]
    cmd += ["-j", str(jobs), "-q", "--json", str(out_json)]
    cmd += ["--no-cache"] if cache is None else ["--cache", str(cache)]
    run = run_measured(cmd, ROOT, env)
    if run.returncode not in (0, 1):  # 1: findings reported
        sys.exit(f"bench_scale: krefaudit exited {run.returncode}:\n{run.stderr[-2000:]}")
    return run


def spatch_run(spatch: str, tree: Path, groups: Path, jobs: int, timeout: int) -> Run:
    cmd = [spatch, "--sp-file", str(COCCI), "--jobs", str(jobs), "--very-quiet"]
    cmd += ["--no-includes", "--file-groups", str(groups)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    run = run_measured(cmd, tree)  # the groups name files relative to the tree
    if run.returncode != 0:
        sys.exit(f"bench_scale: spatch exited {run.returncode}:\n{run.stderr[-2000:]}")
    return run


def spatch_sites(stdout: str) -> set[str]:
    """file:line:col of each reported reference (a site may match several rules)."""
    return {
        line.split(": ", 1)[0] for line in stdout.splitlines() if "[tail-ref-race~spatch]" in line
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_tree = os.environ.get("KREFAUDIT_TREE_6_1_FULL", DEFAULT_TREE)
    ap.add_argument(
        "tree",
        nargs="?",
        default=default_tree,
        help=f"whole linux-source-6.1 (default: {default_tree})",
    )
    ap.add_argument(
        "--size",
        choices=list(SIZES),
        default="mm",
        help="mm: mm + fs/direct-io.c (default); fs: all of fs; whole: the whole tree",
    )
    ap.add_argument(
        "--paths", nargs="+", help="files or directories relative to TREE instead of --size"
    )
    ap.add_argument("--repeat", "-R", type=int, default=3, help="timed repeats (default: 3)")
    ap.add_argument(
        "-j", "--jobs", type=int, default=os.cpu_count() or 1, help="processes for all tools"
    )
    ap.add_argument(
        "--changed",
        action="append",
        help="a file changed for a warm one-file run (repeat for several; each is timed)",
    )
    ap.add_argument(
        "--edited",
        action="append",
        default=[],
        help="a file whose function bodies are edited for a warm one-file run (repeatable)",
    )
    ap.add_argument("--no-spatch", action="store_true", help="leave spatch out")
    ap.add_argument("--spatch", default="spatch", help="spatch binary (default: spatch)")
    ap.add_argument(
        "--spatch-timeout", type=int, default=0, help="spatch --timeout per file (default: none)"
    )
    args = ap.parse_args()
    if args.repeat < 1 or args.jobs < 1:
        ap.error("--repeat and --jobs must be at least 1")
    tree = Path(args.tree)
    if not (tree / "mm").is_dir() or not (tree / "fs").is_dir():
        print(f"bench_scale: {tree} is not an unpacked linux-source-6.1 tree", file=sys.stderr)
        return 2
    spatch = None if args.no_spatch else shutil.which(args.spatch)
    if spatch is None and not args.no_spatch:
        print("bench_scale: no spatch; apt-get install coccinelle", file=sys.stderr)
        return 2

    paths = args.paths or SIZES[args.size]
    size = "custom" if args.paths else args.size
    found = discover(tree, paths)
    files = load(tree, list(found.files))
    mb = sum(len(data) for _, data in files) / 1e6
    ncpu = os.cpu_count()
    print(f"tree: {tree}")
    print(f"size: {size} ({' '.join(paths)}): {len(files)} files (.c and .h), {mb:.1f} MB")
    moved = args.changed or [next(rel for rel, _ in files if rel.endswith(".c"))]
    changes = [(rel, False) for rel in moved] + [(rel, True) for rel in args.edited]
    print(f"repeats: {args.repeat}  jobs: {args.jobs}  cores: {ncpu}")
    print(f"changed for the warm one-file runs: {' '.join(moved)}")
    if args.edited:
        print(f"bodies edited for the warm one-file runs: {' '.join(args.edited)}")
    originals = {rel: ((tree / rel).read_bytes(), (tree / rel).stat()) for rel, _ in changes}

    with tempfile.TemporaryDirectory(prefix="bench_scale.") as tmp:
        groups = Path(tmp) / "groups"  # one file a group, so that --jobs spreads them
        groups.write_text("".join(f"{rel}\n\n" for rel, _ in files))
        out_json = Path(tmp) / "krefaudit.json"
        cache = Path(tmp) / "cache"

        floor1 = Tool("floor: tree-sitter parse only, 1 process")
        floor_n = Tool(f"floor: tree-sitter parse only, {args.jobs} processes")
        cold = Tool(f"krefaudit cold: scan -j {args.jobs} --no-cache")
        warm = Tool("krefaudit warm, no change")
        warm1 = {
            (rel, bodies): Tool(f"krefaudit warm, {rel} {'bodies edited' if bodies else 'changed'}")
            for rel, bodies in changes
        }
        cocci = Tool(f"spatch: tail-ref-race.cocci --jobs {args.jobs}")
        last: dict[str, Run] = {}

        def measure(tool: Tool, name: str, run: Callable[[], Run]) -> None:
            last[name] = run()
            tool.add(last[name])

        def restore() -> None:
            for rel, (data, times) in originals.items():
                (tree / rel).write_bytes(data)
                os.utime(tree / rel, ns=(times.st_atime_ns, times.st_mtime_ns))

        def one_changed(rel: str, bodies: bool, i: int) -> Run:
            """A run after an edit; the other warm runs see the tree as it was."""
            mark, data = f"/* bench_scale change {i} */\n".encode(), originals[rel][0]
            edit = data.replace(b"\n{\n", b"\n{\n" + mark) if bodies else mark + data
            if edit == data:
                raise SystemExit(f"bench_scale: {rel}: no function body opens with a {{ line")
            (tree / rel).write_bytes(edit)
            try:
                return krefaudit_run(tree, paths, args.jobs, out_json, cache)
            finally:
                restore()

        steps: list[Callable[[int], None]] = [
            lambda i: floor1.times.append(floor_serial(files)),
            lambda i: floor_n.times.append(floor_parallel(files, args.jobs)),
            lambda i: measure(
                cold, "krefaudit", lambda: krefaudit_run(tree, paths, args.jobs, out_json, None)
            ),
            lambda i: measure(
                warm, "warm", lambda: krefaudit_run(tree, paths, args.jobs, out_json, cache)
            ),
        ]

        def changed_step(rel: str, bodies: bool) -> Callable[[int], None]:
            label = f"warm1 {rel} {bodies}"
            return lambda i: measure(warm1[rel, bodies], label, lambda: one_changed(rel, bodies, i))

        steps += [changed_step(rel, bodies) for rel, bodies in changes]
        if spatch is not None:
            steps.append(
                lambda i: measure(
                    cocci,
                    "spatch",
                    lambda: spatch_run(spatch, tree, groups, args.jobs, args.spatch_timeout),
                )
            )
        busy0, own0, wall0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        try:
            krefaudit_run(tree, paths, args.jobs, out_json, cache)  # fills the store
            for i in range(args.repeat):
                order = list(range(len(steps)))
                if i % 2:
                    order.reverse()
                for k in order:
                    steps[k](i)
                print(f"  repeat {i + 1}/{args.repeat} done", file=sys.stderr, flush=True)
        finally:
            restore()
        busy, own = busy_cpu_seconds() - busy0, own_cpu_seconds() - own0
        elapsed = time.perf_counter() - wall0
        store_mb = sum(p.stat().st_size for p in cache.iterdir()) / 1e6
        result = json.loads(out_json.read_text())  # the last krefaudit run's output

    floor1_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    findings = result["findings"]
    tail = sum(f["rule_id"] == "tail-ref-race" for f in findings)
    cov = result["coverage"]["totals"]
    cold.note = (
        f"findings: {len(findings)} ({tail} tail-ref-race); refcount model "
        f"{result['refcount_model']['name']}; {cov['functions_seen']} functions, "
        f"{cov['lowered_ratio']:.2%} lowered"
    )
    sites = sorted(spatch_sites(last["spatch"].stdout)) if "spatch" in last else []
    cocci.note = f"reference sites reported: {len(sites)}"
    tools = [floor1, floor_n, cold, warm, *warm1.values()] + ([cocci] if spatch else [])

    print()
    width = max(len(t.label) for t in tools)
    for t in tools:
        print(f"{t.label:<{width}}  median {t.median:8.2f} s  min {min(t.times):8.2f} s")
    print()
    print(f"krefaudit-cold / floor ({args.jobs} processes): {cold.median / floor_n.median:.1f}x")
    print(f"krefaudit-cold / floor (1 process):   {cold.median / floor1.median:.1f}x")
    print(f"krefaudit-warm / krefaudit-cold:       {warm.median / cold.median:.3f}x")
    for t in warm1.values():
        print(f"{t.label.replace(' ', '-', 1)} / krefaudit-cold: {t.median / cold.median:.3f}x")
    if spatch:
        print(f"spatch / krefaudit-cold:               {cocci.median / cold.median:.2f}x")
        for t in warm1.values():
            print(f"spatch / {t.label.replace(' ', '-', 1)}: {cocci.median / t.median:.2f}x")
    print(f"fact store on disk: {store_mb:.0f} MB")
    print()
    print(f"peak RSS, floor (this process, file bytes included): {mib(floor1_rss)}")
    for t in tools[2:]:
        print(
            f"peak RSS, {t.label.split(':')[0]}: largest process {mib(t.maxrss_kib)}; "
            f"process group (sampled sum) {mib(t.group_peak_kib)}"
        )
    print()
    print(f"krefaudit {cold.note}")
    print(f"spatch {cocci.note}")
    # Other load on the machine skews every figure above: say how much there was.
    other = max(0.0, busy - own)
    print(
        f"machine: {elapsed:.0f} s wall; CPU used by other processes meanwhile: {other:.1f} s "
        f"({other / (elapsed * (ncpu or 1)):.1%} of {ncpu} cores)"
    )
    for site in sites[:SHOW_SITES]:
        print(f"  {site}")
    if len(sites) > SHOW_SITES:
        print(f"  ... and {len(sites) - SHOW_SITES} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
