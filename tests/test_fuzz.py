"""No input crashes the front end or the analyses: mutated fixture files either parse
(with errors recovered or functions skipped) or are refused with InputError."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.engine import scan
from analyzer.frontend.parse import InputError, parse_bytes
from tests.fixture_markers import FIXTURES
from tests.fuzz_mutations import mutate

SEEDS = sorted(FIXTURES.rglob("*.c"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(SEEDS) - 1))
def test_front_end_never_crashes(seed: int, which: int) -> None:
    data = mutate(SEEDS[which].read_bytes(), random.Random(seed))
    try:
        ir = parse_bytes(data, "fuzz.c")
    except InputError as e:
        assert "fuzz.c" in str(e)
        return
    for fn in ir.functions:
        assert fn.cfg.instrs and len(fn.cfg.succs) == len(fn.cfg.instrs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_whole_pipeline_never_crashes(seed: int, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    tree = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(FIXTURES / "include", tree / "include")
    rng = random.Random(seed)
    for i, src in enumerate(rng.sample(SEEDS, 3)):
        (tree / f"f{i}.c").write_bytes(mutate(src.read_bytes(), rng))
    result = scan(Path(tree), ["f0.c", "f1.c", "f2.c"], lower_all=True)
    assert len(result.coverage.files) == 3
