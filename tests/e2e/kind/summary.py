"""The kind e2e's last run, written by the run itself into docs/kind-e2e.md.

``make e2e-kind`` ends by recording what it measured: the date, the versions, how long
each step took, and the test outcomes. A run that had to build the node image is a
*cold* run, one that found it a *warm* run; the page keeps the last of each (in
docs/kind-e2e.json), so both times stay visible.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGE = DOCS / "kind-e2e.md"
DATA = DOCS / "kind-e2e.json"
# nodeid -> outcome of every kind test of this run: the scenarios here and the Ansible
# rollout (tests/ansible/kind), whose conftests both report into it.
OUTCOMES: dict[str, str] = {}


def note_outcome(report) -> None:
    """Keep a test's outcome: its call's, or the first setup/teardown that did not pass;
    a failure anywhere wins."""
    if report.when == "call" or report.outcome != "passed":
        OUTCOMES.setdefault(report.nodeid, report.outcome)
        if report.outcome == "failed":
            OUTCOMES[report.nodeid] = "failed"


def record(run: dict, outcomes: dict[str, str], seconds: float) -> None:
    """Merge this run into docs/kind-e2e.json and rewrite docs/kind-e2e.md."""
    from outpost_scenarios.kindbuild import recipe

    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    entry = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "kubernetes": recipe.KUBERNETES,
        "kind": recipe.KIND,
        "node_image": run.get("node_image", "-"),
        "steps": run.get("steps", {}),
        "scenarios": run.get("scenarios", {}),
        "counts": counts,
        "failed": sorted(n for n, o in outcomes.items() if o == "failed"),
        "seconds": round(seconds, 1),
    }
    kind = "cold" if run.get("cold") else "warm"
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    data[kind] = entry
    data["last"] = kind
    DATA.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    PAGE.write_text(render(data))


def render(data: dict) -> str:
    lines = [
        "# The kind e2e: last runs",
        "",
        "Written by `make e2e-kind` at the end of each run (tests/e2e/kind/summary.py); do not",
        "edit. A *cold* run builds the node image, Kubernetes and the images from the",
        "registries (docs/kind.md); a *warm* run finds them built. The last run was "
        f"**{data.get('last', '-')}**.",
        "",
    ]
    for kind in ("cold", "warm"):
        entry = data.get(kind)
        if not entry:
            lines += [f"## Last {kind} run", "", "None recorded yet.", ""]
            continue
        counts = ", ".join(f"{n} {o}" for o, n in sorted(entry["counts"].items())) or "no tests"
        lines += [
            f"## Last {kind} run: {entry['date']}",
            "",
            f"- machine: {entry['machine']}",
            f"- Kubernetes {entry['kubernetes']}, kind {entry['kind']}, node image "
            f"`{entry['node_image']}`",
            f"- tests: {counts}; whole run {entry['seconds'] / 60:.1f} min",
        ]
        if entry["failed"]:
            lines.append(f"- failed: {', '.join(entry['failed'])}")
        lines += ["", "| step | seconds |", "|---|---|"]
        lines += [f"| {step} | {s} |" for step, s in entry["steps"].items()]
        for name, times in entry["scenarios"].items():
            lines.append(
                f"| {name}: install / remove | {times.get('deploy_seconds', '-')} / "
                f"{times.get('teardown_seconds', '-')} |"
            )
        lines.append("")
    return "\n".join(lines)
