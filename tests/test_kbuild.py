"""kbuild-check: the flags kbuild passes, line markers, and what the precise mode sees."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.kbuild import Invocation, check, line_map, parse_args
from tests.fixture_markers import FIXTURES

# What kbuild passes to $(CHECK) for mm/gup.c in a 6.1 x86_64 defconfig build (abridged).
KBUILD_ARGS = shlex.split(
    "-D__linux__ -Dlinux -D__STDC__ -Dunix -D__unix__ -Wbitwise -Wno-return-void "
    "-Wno-unknown-attribute -D__x86_64__ --arch=x86 -mlittle-endian -m64 "
    "-Wp,-MMD,mm/.gup.o.d -nostdinc -I./arch/x86/include -I./include "
    "-include ./include/linux/compiler-version.h -D__KERNEL__ -fshort-wchar "
    "-fno-PIE -mno-sse -mcmodel=kernel -O2 -Wall -DKBUILD_MODFILE='\"mm/gup\"' "
    "-DKBUILD_BASENAME='\"gup\"' mm/gup.c"
)


def test_flags_kbuild_passes() -> None:
    inv = parse_args(KBUILD_ARGS)
    assert inv.source == "mm/gup.c"
    flags = list(inv.cpp_flags)
    for kept in ("-D__KERNEL__", "-nostdinc", "-fshort-wchar", "-mcmodel=kernel", "-m64"):
        assert kept in flags
    assert flags[flags.index("-include") + 1] == "./include/linux/compiler-version.h"
    for dropped in ("-D__STDC__", "--arch=x86", "-mlittle-endian", "-Wbitwise", "-Wall"):
        assert dropped not in flags
    assert not any(f.startswith("-Wp,") for f in flags)
    with pytest.raises(ValueError):
        parse_args(["-D__KERNEL__", "-O2"])


def test_line_markers_map_back() -> None:
    text = (
        '# 1 "mm/x.c"\nint a;\n# 10 "./include/linux/mm.h" 1\nint b;\nint c;\n'
        '# 3 "mm/x.c" 2\nint d;\n'
    )
    lines = line_map(text)
    assert lines[1] == ("mm/x.c", 1)
    assert lines[3] == ("./include/linux/mm.h", 10)
    assert lines[4] == ("./include/linux/mm.h", 11)
    assert lines[6] == ("mm/x.c", 3)


HIDDEN_UNLOCK = """#include "kstubs.h"

#define DROP_PTL(pte, ptl) pte_unmap_unlock(pte, ptl)

static int hidden(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
\tstruct page *page = follow_page(vma, addr, 0);
\tspinlock_t *ptl;
\tpte_t *pte;

\tif (!page)
\t\treturn 0;
\tpte = pte_offset_map_lock(vma->vm_mm, pmd, addr, &ptl);
#ifdef CONFIG_EARLY_DROP
\tDROP_PTL(pte, ptl);
#endif
\tget_page(page);
\treturn 1;
}

int hidden_entry(struct vm_area_struct *vma, pmd_t *pmd) { return hidden(vma, pmd, 0); }
"""


@pytest.fixture()
def small_tree(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the precise mode")
    shutil.copytree(FIXTURES / "include", tmp_path / "include")
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "hidden.c").write_text(HIDDEN_UNLOCK)
    return tmp_path


def test_precise_mode_sees_macros_and_configuration(small_tree: Path) -> None:
    base = ("-nostdinc", "-I./include")
    raw = check(Invocation("mm/hidden.c", base), small_tree, precise=False)
    off = check(Invocation("mm/hidden.c", base), small_tree, precise=True)
    on = check(Invocation("mm/hidden.c", (*base, "-DCONFIG_EARLY_DROP")), small_tree, True)
    # Raw mode reads both #ifdef branches as possible (and follows DROP_PTL, a simple
    # macro alias of pte_unmap_unlock): the lock may be dropped, so it reports. Precise
    # mode compiles one configuration: without the option the lock is held at get_page(),
    # with it the lock is released first.
    assert [f.location.line for f in raw.findings] == [17]
    assert off.findings == ()
    assert [(f.location.path, f.location.line) for f in on.findings] == [("mm/hidden.c", 17)]
    notes = [s.note for s in on.findings[0].trace]
    assert any("released here by pte_unmap_unlock()" in n for n in notes)
    released = [s for s in on.findings[0].trace if "released here" in s.note]
    assert released[0].location.line == 15  # the DROP_PTL line, mapped back
    assert on.refcount_model.evidence[0].location.path == "include/kstubs.h"


def test_kbuild_check_command(small_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(small_tree)
    args = [
        "kbuild-check",
        "--precise",
        "-Wbitwise",
        "--arch=x86",
        "-mlittle-endian",
        "-nostdinc",
        "-I./include",
        "-fshort-wchar",
        "-DCONFIG_EARLY_DROP",
        "mm/hidden.c",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output  # like sparse: warnings do not fail the build
    assert r.stdout.startswith("mm/hidden.c:17:2: warning: get_page()")
    r = CliRunner().invoke(main, ["kbuild-check", "--werror", *args[2:]])
    assert r.exit_code in (0, 1)
    r = CliRunner().invoke(main, ["kbuild-check", "--precise", "-DX", "mm/missing.c"])
    assert r.exit_code == 2 and "preprocessing failed" in r.stderr
