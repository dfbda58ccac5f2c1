"""Determinism across runs and -j, awkward file names through every format, symbolic
links that leave the tree."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from analyzer.cli import main
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
