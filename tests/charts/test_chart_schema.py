"""values.schema.yaml is documented, agrees with values.yaml, and its outputs are current."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.charts.chart_helpers import ADDONS, JUPYTERHUB, OUTPOST, ROOT, load_chart

# charts/tools/schema.py is a script, not a package module (and "charts" is also this
# test package's name): load it from its path.
_spec = importlib.util.spec_from_file_location(
    "chart_schema_tool", ROOT / "charts" / "tools" / "schema.py"
)
schema_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(schema_tool)


def test_schemas_values_json_and_docs_agree():
    assert schema_tool.problems() == []


def test_check_command_exits_zero():
    result = subprocess.run(
        [sys.executable, str(ROOT / "charts" / "tools" / "schema.py"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_checker_finds_missing_descriptions_and_key_mismatches():
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"type": "string"},
            "b": {
                "type": "object",
                "description": "b",
                "properties": {"c": {"type": "string", "description": "c"}},
            },
        },
    }
    assert schema_tool.schema_problems(schema) == [
        "a: no description",
        "b: object with properties needs additionalProperties: false",
    ]
    assert schema_tool.key_mismatches(schema, {"a": "", "b": {"d": 1}}) == [
        "b.c: in values.schema.yaml, missing from values.yaml",
        "b.d: in values.yaml, missing from values.schema.yaml",
    ]


def test_helm_sees_the_generated_json_schema():
    for chart in (OUTPOST, ADDONS, JUPYTERHUB):
        shipped = json.loads((chart / "values.schema.json").read_text())
        assert load_chart(chart).schema == shipped
        load_chart(chart).validate_schema({})  # the defaults are valid
