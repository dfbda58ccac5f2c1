"""rules/ is found from an installed wheel as well as from a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_rules_and_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("krefaudit-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert "analyzer/_rules/tail-ref-race.yaml" in names
    assert "analyzer/_rules/api/release.yaml" in names
    assert "analyzer/_rules/api/locks.yaml" in names
    for data in ("templates/index.html.j2", "templates/finding.html.j2", "report.css", "report.js"):
        assert f"analyzer/report/html/{data}" in names
    probe = (
        "from analyzer.rules.loader import rules_dir, load_rules;"
        "print(rules_dir());print(','.join(r.id for r in load_rules()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rules = "gup-leak,gup-over-release,pin-put-mismatch,tail-ref-race"
    assert out == [str(site / "analyzer" / "_rules"), rules]
