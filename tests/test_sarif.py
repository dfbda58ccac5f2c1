"""SARIF 2.1.0 output validates against the official schema, for a run with traces.

The schema is not committed: .ci/run fetches it at test time from the npm package
@microsoft/jest-sarif (lib/schemas/sarif-2.1.0-rtm.5.json) and points
KREFAUDIT_SARIF_SCHEMA at it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from analyzer.engine import scan
from analyzer.report.sarif import sarif_dict
from analyzer.rules.loader import load_rules
from tests.fixture_markers import FIXTURES


def _schema() -> dict[str, object]:
    path = os.environ.get("KREFAUDIT_SARIF_SCHEMA")
    if not path or not Path(path).is_file():
        if os.environ.get("KREFAUDIT_REQUIRE_REAL_TREES") == "1":
            pytest.fail("KREFAUDIT_SARIF_SCHEMA does not name the SARIF 2.1.0 schema")
        pytest.skip("set KREFAUDIT_SARIF_SCHEMA to the SARIF 2.1.0 schema (see .ci/run)")
    schema: dict[str, object] = json.loads(Path(path).read_text())
    return schema


def test_sarif_validates_and_carries_traces() -> None:
    tree = FIXTURES / "models" / "v3.1"
    result = scan(tree, None)
    doc = sarif_dict(result, load_rules(), tree.resolve().as_uri() + "/")
    validator = jsonschema.validators.validator_for(_schema())(_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    (run,) = doc["runs"]
    assert len(run["results"]) == len(result.findings) > 0
    first = run["results"][0]
    assert first["partialFingerprints"]["krefaudit/v1"] == result.findings[0].fingerprint
    flow = first["codeFlows"][0]["threadFlows"][0]["locations"]
    assert len(flow) == len(result.findings[0].trace)
    assert flow[0]["location"]["message"]["text"].startswith("get_user_pages_fast()")
    assert run["tool"]["driver"]["rules"][0]["help"]["markdown"].startswith("## What it does")
