"""Where the Outpost's CPU per poll goes: a sampling profile (py-spy) of figure 4's
Outpost during one extra round of polls after the measured ones (py-spy stops the
process for each sample, so a profiled round is never a measured one).

``py-spy record --threads --format raw`` writes one line per distinct stack,
``thread (tid): name;frame;...;frame count``, each frame ``function (file:line)``. Only the
event loop's thread (MainThread) is summarised: stopped for each sample, every thread looks
busy to py-spy, and the others (aiosqlite's, the default executor's) wait while polls are
answered from memory; ``main_thread_cpu_share`` (from /proc) says how much of the
Outpost's CPU in that round was the event loop's. The summary is each function's share of
the event loop's samples: ``own_pct`` as the innermost Python frame (the CPU of the C code
it calls, a socket write or a JSON dump, counts here: py-spy does not show native frames),
``total_pct`` anywhere on the stack.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 250  # samples per second
TOP = 15


def py_spy() -> Path:
    return Path(sys.executable).parent / "py-spy"


def unavailable_reason() -> str | None:
    if not py_spy().exists():
        return f"py-spy is not installed in {Path(sys.executable).parent} (make venv)"
    return None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy sampling ``pid`` (and its threads) for ``seconds`` into ``out``."""
    argv = [str(py_spy()), "record", "--pid", str(pid), "--threads", "--rate", str(RATE)]
    argv += ["--duration", f"{max(1, round(seconds))}", "--format", "raw"]
    argv += ["--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(spy: subprocess.Popen, out: Path, seconds: float) -> dict:
    """Wait for py-spy; the summary of what it recorded, or ``{"skipped": why}`` (py-spy
    needs ptrace, which a container may not allow)."""
    log, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        last = log.strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"py-spy exited with {spy.returncode}: {last[0]}"}
    return summarise(out.read_text())


LINE_NUMBER = re.compile(r":\d+\)$")
MAIN_THREAD = re.compile(r"^thread \(\d+\): MainThread$")


def summarise(raw: str, top: int = TOP) -> dict:
    """``{"samples", "rate", "top": [{"function", "own_pct", "total_pct"}]}`` of the
    MainThread's samples, the ``top`` functions by own samples (a function is its name and
    file, any line)."""
    samples = 0
    own: Counter = Counter()
    total: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        thread, _, stack = stack.partition(";")
        if not stack or not count.isdigit() or not MAIN_THREAD.match(thread):
            continue
        n = int(count)
        frames = [LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    share = (lambda n: 100 * n / samples) if samples else (lambda n: 0.0)
    return {
        "samples": samples,
        "rate": RATE,
        "top": [
            {"function": function, "own_pct": share(n), "total_pct": share(total[function])}
            for function, n in own.most_common(top)
        ],
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's, its main thread's) CPU seconds so far, user + system."""

    def ticks(stat: str) -> int:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    hz = os.sysconf("SC_CLK_TCK")
    return ticks(f"/proc/{pid}/stat") / hz, ticks(f"/proc/{pid}/task/{pid}/stat") / hz


def markdown(profile: dict) -> list[str]:
    """The page's section for a profile in the results (none if it was not taken)."""
    if not profile.get("top"):
        reason = profile.get("skipped", "no samples")
        return ["## Where a poll's CPU goes", "", f"Not profiled in this run: {reason}.", ""]
    out = [
        "## Where a poll's CPU goes",
        "",
        f"py-spy, {profile['rate']} samples/s, {profile['samples']:,} samples of the event "
        f"loop of figure 4's Outpost (SQLite, {profile.get('servers', 0):,} servers, pinned) "
        "during one more round of polls after the measured ones (`bench/profile.py`); the "
        f"event loop's thread spent {100 * profile.get('main_thread_cpu_share', 0):.0f}% of "
        "the Outpost's CPU in that round. *Own*: the function was the innermost Python "
        "frame (the C code it calls counts here); *total*: it was anywhere on the stack.",
        "",
        "| function (file) | own | total |",
        "|---|---:|---:|",
    ]
    for entry in profile["top"]:
        function = entry["function"].replace("|", "\\|")
        out.append(f"| `{function}` | {entry['own_pct']:.1f}% | {entry['total_pct']:.1f}% |")
    return [*out, ""]
