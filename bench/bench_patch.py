"""Benchmark patch mode: `krefaudit check-patch` on a one-function change, store filled.

Not a test. Run from the checkout:

    PYTHONPATH=. python bench/bench_patch.py [TREE] [--file mm/gup.c] [--function NAME]

TREE defaults to $KREFAUDIT_TREE_6_1_FULL, else /work/trees/full/linux-source-6.1. Each
patch adds one call (`barrier();`, with a comment that differs from run to run, so no
run is answered by an earlier one's result) at the top of FUNCTION in FILE, as `git diff`
would write it. First `krefaudit scan TREE DIR` (DIR: the folder of FILE) fills a fact
store of the benchmark's own, as a CI job's scan of the tree would; then each check-patch
run is timed: with the tree's facts cached, only the patched file is new.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_frontend import analyzer_env  # noqa: E402

DEFAULT_TREE = "/work/trees/full/linux-source-6.1"


def one_function_patch(tree: Path, rel: str, function: str, i: int) -> str:
    text = (tree / rel).read_text(errors="surrogateescape")
    m = re.search(rf"^\w[^;{{}}]*\b{re.escape(function)}\([^;{{]*\)\s*\{{\n", text, re.M)
    if m is None:
        sys.exit(f"bench_patch: no definition of {function}() in {rel}")
    changed = text[: m.end()] + f"\tbarrier(); /* bench_patch {i} */\n" + text[m.end() :]
    diff = difflib.unified_diff(
        text.splitlines(keepends=True),
        changed.splitlines(keepends=True),
        f"a/{rel}",
        f"b/{rel}",
    )
    return f"diff --git a/{rel} b/{rel}\n" + "".join(diff)


def run(args: list[str], cache: Path, jobs: int, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "analyzer", *args]
    cmd += ["-q", "-j", str(jobs), "--cache", str(cache)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"bench_patch: {args[0]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    last = done.stdout.strip().splitlines()[-1:] or [""]
    print(f"  {wall:6.2f} s  {last[0]}", file=sys.stderr, flush=True)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_tree = os.environ.get("KREFAUDIT_TREE_6_1_FULL", DEFAULT_TREE)
    ap.add_argument("tree", nargs="?", default=default_tree, help=f"default: {default_tree}")
    ap.add_argument("--file", default="mm/gup.c", help="the file changed (default: mm/gup.c)")
    ap.add_argument("--function", default="check_vma_flags", help="the function changed")
    ap.add_argument("--repeat", "-R", type=int, default=5, help="timed warm runs (default: 5)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    tree = Path(args.tree)
    folder = str(Path(args.file).parent)
    with tempfile.TemporaryDirectory(prefix="bench_patch.") as tmp:
        cache = Path(tmp) / "cache"
        print(f"tree: {tree}\nchange: one call added to {args.function}() in {args.file}")
        env = analyzer_env()
        fill = run(["scan", str(tree), folder], cache, args.jobs, env)
        warm = []
        for i in range(args.repeat):
            patch = Path(tmp) / f"{i:04}-one-function.patch"
            patch.write_text(one_function_patch(tree, args.file, args.function, i))
            warm.append(run(["check-patch", str(tree), str(patch)], cache, args.jobs, env))
    print(f"scan {folder}, filling the store: {fill:8.2f} s")
    print(
        f"check-patch, tree's facts cached: median {statistics.median(warm):6.2f} s"
        f"  min {min(warm):6.2f} s  ({args.repeat} runs, -j {args.jobs})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
