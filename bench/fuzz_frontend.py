"""Fuzz the front end with mutated C files and count crashes and slow cases.

    python bench/fuzz_frontend.py [--cases 10000] [--tree TREE] [--seed 1]

Seeds are the fixtures, plus mm/*.c of TREE when given (a real kernel tree). A crash is
any exception other than the InputError a refused file raises; a slow case is one that
takes more than --slow seconds. Exit status 1 when any case crashed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.frontend.parse import InputError, parse_bytes  # noqa: E402
from tests.fuzz_mutations import mutate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--tree", type=Path, help="a kernel tree whose mm/*.c join the seeds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slow", type=float, default=2.0, help="seconds that make a case slow")
    args = ap.parse_args()
    seeds = sorted((ROOT / "fixtures").rglob("*.c"))
    if args.tree is not None:
        seeds += sorted((args.tree / "mm").glob("*.c"))
    blobs = [p.read_bytes() for p in seeds]
    rng = random.Random(args.seed)
    crashes = slow = refused = 0
    worst = 0.0
    start = time.perf_counter()
    for case in range(args.cases):
        data = mutate(rng.choice(blobs), rng)
        t0 = time.perf_counter()
        try:
            parse_bytes(data, f"case{case}.c")
        except InputError:
            refused += 1
        except Exception:  # noqa: BLE001 - counting crashes is the point
            crashes += 1
            print(f"crash in case {case} (seed {args.seed}):", file=sys.stderr)
            traceback.print_exc()
        took = time.perf_counter() - t0
        worst = max(worst, took)
        slow += took > args.slow
    total = time.perf_counter() - start
    print(f"cases: {args.cases}  seeds: {len(seeds)} files  time: {total:.1f} s")
    print(f"crashes: {crashes}  refused (InputError): {refused}  slow (>{args.slow} s): {slow}")
    print(f"slowest case: {worst:.2f} s  mean: {1000 * total / max(args.cases, 1):.1f} ms")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
