"""Benchmark the front end: krefaudit's lowering of Linux 6.1 mm/ against tree-sitter's bare parse.

Not a test. Run from the checkout: PYTHONPATH=. python bench/bench_frontend.py [TREE] [--repeat N]

TREE defaults to $KREFAUDIT_TREE_6_1. File bytes are read into memory first; each repeat times the
floor (parse only), normalize only and the full lowering, in alternating order, then the medians,
minimums and ratio of medians are printed. Peak memory comes from one more, untimed, traced run.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import cache
from pathlib import Path

from analyzer.frontend.normalize import normalize
from analyzer.frontend.parse import parse_bytes, parse_only
from analyzer.ir import FileIR

UNPACK_HINT = (
    "unpack it from the Debian package linux-source-6.1, e.g.:\n"
    "  tar -xJf /usr/src/linux-source-6.1.tar.xz "
    "linux-source-6.1/mm linux-source-6.1/fs linux-source-6.1/include\n"
    "then pass the linux-source-6.1 directory or set KREFAUDIT_TREE_6_1"
)

TREE_HELP = "unpacked linux-source-6.1 tree (default: $KREFAUDIT_TREE_6_1)"

Files = list[tuple[str, bytes]]

ROOT = Path(__file__).resolve().parent.parent


@cache
def analyzer_env() -> dict[str, str]:
    """The environment for running `python -m analyzer` from this checkout (not to be
    changed: every run shares it), after byte-compiling the package once, as `pip
    install` does: where PYTHONDONTWRITEBYTECODE is set, every run would otherwise
    compile all of it again (about 0.3 s)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "analyzer")], check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def load(tree: Path, paths: list[str] | None) -> Files:
    if paths:
        chosen = [tree / p for p in paths]
    else:
        chosen = sorted((tree / "mm").rglob("*.c")) + [tree / "fs" / "direct-io.c"]
    return [(str(p.relative_to(tree)), p.read_bytes()) for p in chosen]


def floor_pass(files: Files) -> None:
    for _, data in files:
        parse_only(data)


def normalize_pass(files: Files) -> None:
    for _, data in files:
        normalize(data)


def lower_pass(files: Files) -> list[FileIR]:
    """Keeps every FileIR, as engine.parse_paths does, so memory and GC costs are the real ones."""
    return [parse_bytes(data, rel) for rel, data in files]


def timed(fn: Callable[[Files], object], files: Files) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(files)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tree", nargs="?", default=os.environ.get("KREFAUDIT_TREE_6_1"), help=TREE_HELP)
    ap.add_argument(
        "--paths", nargs="+", help="files relative to TREE (default: mm/**/*.c, fs/direct-io.c)"
    )
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats (default: 5)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    tree = Path(args.tree) if args.tree else None
    if tree is None or not (tree / "mm").is_dir():
        where = f"{tree} has no mm/ directory" if tree else "no tree given"
        print(f"bench_frontend: {where}; {UNPACK_HINT}", file=sys.stderr)
        return 2
    files = load(tree, args.paths)
    mb = sum(len(data) for _, data in files) / 1e6
    print(f"tree: {tree}")
    print(f"files: {len(files)}  bytes: {mb:.1f} MB  repeats: {args.repeat}")

    passes: list[tuple[str, Callable[[Files], object]]] = [
        ("floor (tree-sitter parse only)", floor_pass),
        ("normalize only", normalize_pass),
        ("krefaudit lowering (normalize+parse+lower)", lower_pass),
    ]
    times: list[list[float]] = [[] for _ in passes]
    for i in range(args.repeat):
        order = range(len(passes)) if i % 2 == 0 else reversed(range(len(passes)))
        for k in order:
            times[k].append(timed(passes[k][1], files))

    floor, norm, lowering = med = [statistics.median(ts) for ts in times]
    for (label, _), ts, m in zip(passes, times, med, strict=True):
        print(f"{label}: median {m:.2f} s  min {min(ts):.2f} s  ({mb / m:.1f} MB/s)")
    print(f"ratio lowering/floor: {lowering / floor:.2f}x  (normalize/floor: {norm / floor:.2f}x)")

    gc.collect()  # peak memory: one more lowering run, traced (tracing slows it, so not timed)
    tracemalloc.start()
    irs = lower_pass(files)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    functions, skipped = sum(len(f.functions) for f in irs), sum(len(f.skipped) for f in irs)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"functions lowered: {functions}  skipped: {skipped}")
    print(f"peak traced memory during lowering: {peak / 1e6:.1f} MB; max RSS: {rss_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
