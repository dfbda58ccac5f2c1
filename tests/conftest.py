"""Real kernel trees for end-to-end tests: unpacked at test time from the Debian packages
linux-source-6.1 and linux-source-6.12 (tarballs under /usr/src), never committed.

KREFAUDIT_TREE_6_1 / KREFAUDIT_TREE_6_12 point at an unpacked tree to use instead.
Without a tree the real-tree tests are skipped, unless KREFAUDIT_REQUIRE_REAL_TREES=1
(set by .ci/run), where a missing tree is a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_fact_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Commands run by the tests keep their fact store in a folder of their own, never
    in the user's cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


# The parts of the tarball the tests read.
_MEMBERS = ("mm", "fs", "include", "arch/x86/include", "arch/x86/mm", "io_uring", "Makefile")
_CACHE = Path(os.environ.get("KREFAUDIT_TREE_CACHE", Path.home() / ".cache" / "krefaudit-trees"))


def _tarball(name: str) -> Path:
    """The Debian package's tarball; its absence skips, or fails under .ci/run."""
    tarball = Path("/usr/src") / f"{name}.tar.xz"
    if not tarball.exists():
        message = f"{tarball} missing: apt-get install {name}"
        if os.environ.get("KREFAUDIT_REQUIRE_REAL_TREES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return tarball


def _tree(version: str) -> Path:
    env = os.environ.get(f"KREFAUDIT_TREE_{version.replace('.', '_')}")
    if env:
        return Path(env)
    name = f"linux-source-{version}"
    root = _CACHE / name
    done = root / ".krefaudit-unpacked"
    if done.exists():
        return root
    tarball = _tarball(name)
    _CACHE.mkdir(parents=True, exist_ok=True)
    members = [f"{name}/{m}" for m in _MEMBERS]
    subprocess.run(
        ["tar", "-xJf", str(tarball), "-C", str(_CACHE), "--wildcards", *members], check=True
    )
    done.touch()
    return root


def _full_tree(version: str, prepare: bool) -> Path:
    """The whole tree; with `prepare`, configured (`make defconfig`) and prepared
    (`make prepare`) for kbuild runs. KREFAUDIT_TREE_<V>_FULL points at one to use."""
    env = os.environ.get(f"KREFAUDIT_TREE_{version.replace('.', '_')}_FULL")
    name = f"linux-source-{version}"
    root = Path(env) if env else _CACHE / "full" / name
    unpacked = root / ".krefaudit-unpacked"
    if not env and not unpacked.exists():
        tarball = _tarball(name)
        (_CACHE / "full").mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xJf", str(tarball), "-C", str(_CACHE / "full")], check=True)
        unpacked.touch()
    prepared = root / ".krefaudit-prepared"
    if prepare and not prepared.exists():
        for target in (["defconfig"], ["-j2", "prepare"]):
            subprocess.run(["make", *target], cwd=root, check=True, capture_output=True)
        prepared.touch()
    return root


@pytest.fixture(scope="session")
def tree_6_1_full() -> Path:
    return _full_tree("6.1", prepare=True)


@pytest.fixture(scope="session")
def tree_6_12_full() -> Path:
    return _full_tree("6.12", prepare=False)


@pytest.fixture(scope="session")
def tree_6_1() -> Path:
    return _tree("6.1")


@pytest.fixture(scope="session")
def tree_6_12() -> Path:
    return _tree("6.12")
