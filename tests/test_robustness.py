"""Determinism across runs and -j, awkward file names through every format, symbolic
links that leave the tree, no cyclic garbage."""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from analyzer import engine
from analyzer.cli import main
from analyzer.factstore import FactStore
from analyzer.program.tree import discover
from tests.fixture_markers import FIXTURES

ODD = 'wé <"x"> & y.c'


def odd_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "models" / "v3.1", tree)
    (tree / "mm" / "follow_ref.c").rename(tree / "mm" / ODD)
    return tree


def outputs(tree: Path, out: Path, jobs: str) -> dict[str, bytes]:
    runner = CliRunner(env={"SOURCE_DATE_EPOCH": "1700000000"})
    r = runner.invoke(
        main,
        [
            "scan",
            str(tree),
            "--no-cache",
            "-j",
            jobs,
            "--json",
            str(out / "r.json"),
            "--sarif",
            str(out / "r.sarif"),
            "--html",
            str(out / "html"),
        ],
    )
    assert r.exit_code == 1, r.output
    files = {"stdout": r.stdout.encode()}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            files[p.relative_to(out).as_posix()] = p.read_bytes()
    return files


def test_byte_identical_across_runs_and_jobs(tmp_path: Path) -> None:
    tree = odd_tree(tmp_path)
    runs = [outputs(tree, tmp_path / f"o{i}", j) for i, j in enumerate(["1", "1", "2"])]
    assert runs[0].keys() == runs[1].keys() == runs[2].keys()
    for name in runs[0]:
        assert runs[0][name] == runs[1][name] == runs[2][name], name


def test_odd_file_names_round_trip(tmp_path: Path) -> None:
    tree = odd_tree(tmp_path)
    got = outputs(tree, tmp_path / "o", "1")
    path = f"mm/{ODD}"
    assert f"{path}:34:3: warning:" in got["stdout"].decode()
    doc = json.loads(got["r.json"])
    assert path in {f["path"] for f in doc["findings"]}
    sarif = json.loads(got["r.sarif"])
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in sarif["runs"][0]["results"]
    }
    assert path in {unquote(u) for u in uris}
    assert all(" " not in u and '"' not in u and "<" not in u for u in uris)
    pages = b"".join(v for k, v in got.items() if k.startswith("html/")).decode()
    assert "mm/wé &lt;&#34;x&#34;&gt; &amp; y.c" in pages
    assert ODD not in pages


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_symlinks_leaving_the_tree_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.c").write_text("int leak(void) { return 1; }\n")
    tree = tmp_path / "tree"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm" / "ok.c").write_text("int ok(void) { return 0; }\n")
    (tree / "mm" / "link.c").symlink_to(outside / "secret.c")
    (tree / "mm" / "dir").symlink_to(outside, target_is_directory=True)
    (tree / "inside.c").symlink_to(tree / "mm" / "ok.c")
    found = discover(tree, ["mm", "inside.c", "mm/link.c"])
    assert found.files == ("mm/ok.c",)  # inside.c resolves to mm/ok.c
    assert found.problems == ("mm/link.c: leads outside the tree; not followed",)


def test_a_scan_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    """The CLI turns the cycle collector off (analyzer/cli.py main()): sound only while
    a run's IR, store entries and analysis facts form no reference cycles, so that
    reference counting frees them. Every fixture, cold and warm, in one and in two
    processes, a changed file analyzed again over the store: nothing for the collector.
    (A first run may leave a few: module-level caches built once, such as the salt.)"""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES, tree)
    store = FactStore(tmp_path / "cache", pytest.fail)
    changed = tree / "models" / "v3.1" / "mm" / "follow_ref.c"
    was = gc.isenabled()
    gc.disable()
    try:
        engine.scan(tree, ["."], store=store)
        gc.collect()
        for jobs in (1, 2):
            for with_store in (None, store):
                engine.scan(tree, ["."], jobs=jobs, store=with_store, functions=True)
                assert gc.collect() == 0, (jobs, with_store)
        changed.write_text(changed.read_text() + "\n/* changed */\n")
        engine.scan(tree, ["."], jobs=2, store=store, functions=True)
        assert gc.collect() == 0
    finally:
        store.close()
        if was:
            gc.enable()
