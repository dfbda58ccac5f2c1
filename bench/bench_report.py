"""Size and time of the HTML report for a run with many findings.

    python bench/bench_report.py [--findings 3000]

The findings of the bundled v3.1 tree are replicated (each copy a distinct finding with
its own fingerprint) to the requested count; the report is written to a temporary folder
and its size is printed: the index, the largest page, the total.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.engine import scan  # noqa: E402
from analyzer.report.html.writer import write_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--findings", type=int, default=3000)
    args = ap.parse_args()
    tree = ROOT / "fixtures" / "models" / "v3.1"
    result = scan(tree)
    base = result.findings
    many = tuple(
        dataclasses.replace(base[i % len(base)], fingerprint=f"v1:{i:032x}")
        for i in range(args.findings)
    )
    result = dataclasses.replace(result, findings=many)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        t0 = time.perf_counter()
        write_report(result, tree, out, "2024-01-01 00:00 UTC")
        took = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    total = sum(sizes.values())
    largest = max(sizes, key=sizes.__getitem__)
    print(f"findings: {len(many)}  files: {len(sizes)}  time: {took:.1f} s")
    print(
        f"index.html: {sizes['index.html'] / 1e6:.2f} MB  largest page: {largest} "
        f"{sizes[largest] / 1e3:.0f} kB  total: {total / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
