"""The smoke version of `make bench`: every figure with tiny sizes, so the benchmark code
cannot rot. It checks that every key of latest.json's schema is produced and that the
page and plot are written; it asserts no performance target (benchmarks, not tests).
Results go to a temporary directory, never over bench/results/ or docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import SCHEMA, missing_keys

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_bench_smoke_produces_every_figure_and_leaves_no_process(tmp_path):
    committed = {
        p: p.stat().st_mtime_ns
        for p in (ROOT / "bench" / "results" / "latest.json", ROOT / "docs" / "performance.md")
        if p.exists()
    }
    out_json, out_doc = tmp_path / "latest.json", tmp_path / "performance.md"
    argv = [sys.executable, "-m", "bench", "--smoke", "--json", str(out_json)]
    argv += ["--doc", str(out_doc)]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    results = json.loads(out_json.read_text())
    assert missing_keys(results) == [], run.stdout[-3000:]
    assert set(SCHEMA) <= set(results)
    assert results["smoke"] is True and results["errors"] == {}
    # one summary line per figure, each with its baseline and ratio
    figures = [row["figure"] for row in results["figures"]]
    for row in results["figures"]:
        assert row["figure"] in run.stdout
    assert "tunnel.outpost.latency_p50_ms" in figures and "db.poll_rps_postgresql" in figures
    # the poll profile was taken, or the page says why not
    assert results["profile"].get("top") or results["profile"]["skipped"]
    page = out_doc.read_text()
    assert "| figure |" in page and "performance.png" in page and "smoke run" in page
    assert (tmp_path / "performance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the real results were not touched, and the run left no process behind
    for path, mtime in committed.items():
        assert path.stat().st_mtime_ns == mtime
    workdir = run.stdout.split("work dir ", 1)[1].split()[0]
    assert workdir.startswith("/") and not os.path.exists(workdir)
    assert processes_mentioning(workdir) == []


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (the bench's work directory is
    in the argv of every server, daemon and Outpost it starts)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found
