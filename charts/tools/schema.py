"""Chart values schemas: generate, check, and document them.

``values.schema.yaml`` in each chart is the source of truth (as in zero-to-jupyterhub).
This tool

- writes ``values.schema.json`` next to it (what Helm validates values against),
- checks that the schema is documented (a description on every key, and
  ``additionalProperties: false`` on every object the chart defines) and that its keys
  and ``values.yaml`` agree in both directions,
- writes the values reference of every chart into its page (``docs/charts.md``, for the
  kind scenarios' hub chart ``docs/kind.md``) between markers.

    python charts/tools/schema.py generate   # rewrite the JSON schemas and the docs
    python charts/tools/schema.py check      # exit 1 when anything is stale or missing
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "charts.md"
# chart -> the page that holds its values reference
CHARTS = {
    ROOT / "charts" / "jupyterhub-outpost": DOCS,
    ROOT / "charts" / "hub-addons": DOCS,
    # the scenario runner's zero-to-jupyterhub stand-in (test tooling)
    ROOT / "scenario-runner" / "charts" / "jupyterhub": ROOT / "docs" / "kind.md",
}


def load_schema(chart: Path) -> dict:
    return yaml.safe_load((chart / "values.schema.yaml").read_text())


def load_values(chart: Path) -> dict:
    return yaml.safe_load((chart / "values.yaml").read_text()) or {}


def render_json(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def _is_type(schema: dict, name: str) -> bool:
    kind = schema.get("type")
    return kind == name or (isinstance(kind, list) and name in kind)


def schema_problems(schema: dict, path: str = "") -> list[str]:
    """Keys without a description, and chart-defined objects that accept unknown keys."""
    problems = []
    if path and not schema.get("description"):
        problems.append(f"{path}: no description")
    props = schema.get("properties")
    if props is not None and schema.get("additionalProperties") is not False:
        problems.append(
            f"{path or '<root>'}: object with properties needs additionalProperties: false"
        )
    for key, sub in (props or {}).items():
        problems += schema_problems(sub, f"{path}.{key}" if path else key)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in extra:
        problems += schema_problems(extra, f"{path}.<name>")
    return problems


def key_mismatches(schema: dict, values: object, path: str = "") -> list[str]:
    """Keys that are in the schema but not in values.yaml, or the other way round."""
    props = schema.get("properties")
    if props is None or not isinstance(values, dict):
        return []
    problems = []
    for key in props:
        if key not in values:
            problems.append(f"{path}{key}: in values.schema.yaml, missing from values.yaml")
    for key, value in values.items():
        if key not in props:
            problems.append(f"{path}{key}: in values.yaml, missing from values.schema.yaml")
        else:
            problems += key_mismatches(props[key], value, f"{path}{key}.")
    return problems


def _type_text(schema: dict) -> str:
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if "enum" in schema:
        text += " (" + ", ".join(f"`{v}`" for v in schema["enum"]) + ")"
    return text


_NO_DEFAULT = object()


def _default_text(value: object) -> str:
    if value is _NO_DEFAULT:
        return ""
    if isinstance(value, str) and "\n" in value:
        return "(multi-line, see values.yaml)"
    text = json.dumps(value)
    return f"`{text}`" if len(text) <= 60 else "(see values.yaml)"


def reference_rows(schema: dict, values: object, path: str = "") -> list[str]:
    rows = []
    for key, sub in (schema.get("properties") or {}).items():
        full = f"{path}.{key}" if path else key
        value = values.get(key, _NO_DEFAULT) if isinstance(values, dict) else _NO_DEFAULT
        description = " ".join(sub.get("description", "").split()).replace("|", "\\|")
        rows.append(f"| `{full}` | {_type_text(sub)} | {_default_text(value)} | {description} |")
        rows += reference_rows(sub, value, full)
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            rows += reference_rows(extra, _NO_DEFAULT, f"{full}.<name>")
    return rows


def reference_markdown(chart: Path) -> str:
    schema, values = load_schema(chart), load_values(chart)
    lines = [
        "| key | type | default | description |",
        "|---|---|---|---|",
        *reference_rows(schema, values),
    ]
    return "\n".join(lines) + "\n"


def _markers(chart: Path) -> tuple[str, str]:
    name = chart.name
    return (
        f"<!-- BEGIN values reference {name} (charts/tools/schema.py generate) -->\n",
        f"<!-- END values reference {name} -->",
    )


def render_docs(docs: Path, text: str) -> str:
    """``text`` of the page ``docs`` with the references of its charts rewritten."""
    for chart in (chart for chart, page in CHARTS.items() if page == docs):
        begin, end = _markers(chart)
        if begin not in text or end not in text:
            raise SystemExit(f"{docs}: markers for {chart.name} are missing")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + begin + reference_markdown(chart) + end + tail
    return text


def generate() -> None:
    for chart in CHARTS:
        (chart / "values.schema.json").write_text(render_json(load_schema(chart)))
    for docs in set(CHARTS.values()):
        docs.write_text(render_docs(docs, docs.read_text()))


def problems() -> list[str]:
    found = []
    for chart in CHARTS:
        schema, values = load_schema(chart), load_values(chart)
        found += [f"{chart.name}: {p}" for p in schema_problems(schema)]
        found += [f"{chart.name}: {p}" for p in key_mismatches(schema, values)]
        json_path = chart / "values.schema.json"
        if not json_path.exists() or json_path.read_text() != render_json(schema):
            found.append(
                f"{chart.name}: values.schema.json is stale (run charts/tools/schema.py generate)"
            )
    for docs in sorted(set(CHARTS.values())):
        if not docs.exists() or docs.read_text() != render_docs(docs, docs.read_text()):
            found.append(
                f"{docs.relative_to(ROOT)}: values reference is stale "
                "(run charts/tools/schema.py generate)"
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["generate", "check"])
    args = parser.parse_args(argv)
    if args.action == "generate":
        generate()
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
