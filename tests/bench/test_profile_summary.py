"""bench/profile.py turns py-spy's raw stacks into the page's table: each function's own
and total share of the event loop's samples, line numbers merged, other threads left out."""

from __future__ import annotations

from bench.profile import markdown, summarise

RAW = """\
thread (7): MainThread;run (asyncio/runners.py:190);_run_once (asyncio/base_events.py:1922);poll (outpost/polls.py:40) 6
thread (7): MainThread;run (asyncio/runners.py:190);_run_once (asyncio/base_events.py:1922);poll (outpost/polls.py:52);dumps (json/__init__.py:231) 3
thread (7): MainThread;run (asyncio/runners.py:190);_run_once (asyncio/base_events.py:1910) 1
thread (9): Thread-1 (_connection_worker_thread);_connection_worker_thread (aiosqlite/core.py:59) 40
"""


def test_own_and_total_shares_of_the_event_loop_merge_lines_of_one_function():
    summary = summarise(RAW)
    assert summary["samples"] == 10
    rows = {row["function"]: row for row in summary["top"]}
    # own: innermost frame; total: anywhere on the stack; lines 40 and 52 are one function
    assert rows["poll (outpost/polls.py)"]["own_pct"] == 60.0
    assert rows["poll (outpost/polls.py)"]["total_pct"] == 90.0
    assert rows["dumps (json/__init__.py)"]["own_pct"] == 30.0
    assert rows["_run_once (asyncio/base_events.py)"]["own_pct"] == 10.0
    assert rows["_run_once (asyncio/base_events.py)"]["total_pct"] == 100.0
    assert [row["function"] for row in summary["top"]][0] == "poll (outpost/polls.py)"


def test_a_profile_that_could_not_be_taken_says_why_on_the_page():
    assert "Not profiled in this run: py-spy exited with 1: ptrace" in "\n".join(
        markdown({"skipped": "py-spy exited with 1: ptrace"})
    )
    table = "\n".join(markdown({**summarise(RAW), "servers": 20}))
    assert "| `poll (outpost/polls.py)` | 60.0% | 90.0% |" in table
