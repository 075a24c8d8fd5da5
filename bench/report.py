"""Figures against their baselines: summary lines, latest.json, docs/performance.md + PNG.

Every figure is compared with a baseline measured in the same run where the issue names
one (direct path, idle hub, LocalProcessSpawner on the hub, SQLite); where it names none,
the baseline is the target itself (stated in the "baseline" column), so the ratio says how
far from the target the figure is.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

# every key latest.json has (the smoke test checks them)
SCHEMA = {
    "tunnel": {
        path: ["latency_p50_ms", "latency_p99_ms", "ws_rtt_p50_ms", "throughput_MBps"]
        for path in ("direct", "openssh", "outpost")
    },
    "hub": ["api_p99_ms_idle", "api_p99_ms_loaded"],
    "spawn": ["ready_s_direct", "ready_s_outpost"],
    "outpost": [
        "poll_rps",
        "poll_p99_ms",
        "concurrent_starts_ok",
        "concurrent_starts_errors",
        "rss_kb_per_server",
        "start_p50_ms",
        "rss_mb_idle",
        "rss_mb_full",
    ],
    "tunnels": ["setup_s_500", "rss_mb_500", "recover_s_500"],
    "db": ["poll_rps_sqlite", "poll_rps_postgresql"],
    "workers": ["poll_rps_1", "poll_rps_2", "poll_rps_2_unpipelined", "poll_rps_replica"],
}

# The original Outpost (kreuzert/jupyterhub-outpost, uvicorn, one worker, SQLite) as
# measured side by side with ours in issue 19 on a machine of this kind: it cannot run
# here (no image, no network), so these stand in for a same-run baseline.
ORIGINAL_START_P50_MS = 68.0
ORIGINAL_RSS_MB_300 = 109.0


@dataclass
class Row:
    figure: str  # "tunnel.outpost.latency_p50_ms"
    value: float | None
    baseline: float | None
    baseline_label: str
    target: str  # "" when the issue sets none
    met: bool | None  # None: no target, or not measured
    unit: str

    @property
    def higher_is_better(self) -> bool:
        return self.unit in ("MB/s", "1/s") or self.figure.endswith("_ok")

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


def _get(results: dict, dotted: str):
    value = results
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def rows(results: dict, params: dict) -> list[Row]:
    """The figures of the issue, each with its baseline and target."""
    r = lambda key: _get(results, key)  # noqa: E731
    out: list[Row] = []

    def add(figure, baseline, label, unit, target="", check=None):
        value = r(figure)
        met = None
        if check is not None and value is not None and (baseline is not None or "none" in label):
            met = bool(check(value, baseline))
        out.append(Row(figure, value, baseline, label, target, met, unit))

    units = {"latency_p50_ms": "ms", "latency_p99_ms": "ms", "ws_rtt_p50_ms": "ms"}
    units["throughput_MBps"] = "MB/s"
    for path in ("direct", "openssh", "outpost"):
        for metric, unit in units.items():
            figure = f"tunnel.{path}.{metric}"
            if path == "direct":
                add(figure, None, "(the baseline)", unit)
            elif path == "outpost" and metric == "latency_p50_ms":
                add(
                    figure,
                    r(f"tunnel.direct.{metric}"),
                    "direct",
                    unit,
                    "<= direct + 2 ms",
                    lambda v, b: v - b <= 2.0,
                )
            elif path == "outpost" and metric == "throughput_MBps":
                add(
                    figure,
                    r("tunnel.openssh.throughput_MBps"),
                    "openssh",
                    unit,
                    ">= openssh",
                    lambda v, b: v >= b,
                )
            else:
                add(figure, r(f"tunnel.direct.{metric}"), "direct", unit)
    add("hub.api_p99_ms_idle", None, "(the baseline)", "ms")
    add(
        "hub.api_p99_ms_loaded",
        r("hub.api_p99_ms_idle"),
        "idle",
        "ms",
        "<= 1.5 x idle",
        lambda v, b: v <= 1.5 * b,
    )
    add("spawn.ready_s_direct", None, "(the baseline)", "s")
    add(
        "spawn.ready_s_outpost",
        r("spawn.ready_s_direct"),
        "direct",
        "s",
        "<= direct + 0.2 s",
        lambda v, b: v - b <= 0.2,
    )
    add("outpost.poll_rps", 3600.0, "target", "1/s", ">= 3600", lambda v, b: v >= b)
    add("outpost.poll_p99_ms", 20.0, "target", "ms", "<= 20 ms", lambda v, b: v <= b)
    original = "the original, issue 19"
    add(
        "outpost.start_p50_ms",
        ORIGINAL_START_P50_MS,
        original,
        "ms",
        "<= the original",
        lambda v, b: v <= b,
    )
    for figure in ("rss_mb_idle", "rss_mb_full"):
        add(
            f"outpost.{figure}",
            ORIGINAL_RSS_MB_300,
            f"{original}, 300 servers",
            "MB",
            "<= the original",
            lambda v, b: v <= b,
        )
    fired = float(params.get("concurrent_starts", 200))
    add(
        "outpost.concurrent_starts_ok",
        fired,
        "starts fired",
        "",
        "all",
        lambda v, b: v >= b,
    )
    add(
        "outpost.concurrent_starts_errors",
        None,
        "none (0 is the target)",
        "",
        "0",
        lambda v, b: v == 0,
    )
    idle_mb = r("outpost.rss_mb_idle")
    add(
        "outpost.rss_kb_per_server",
        idle_mb * 1024 / 1000 if idle_mb else None,
        "empty Outpost's RSS / 1000",
        "KiB",
    )
    add("tunnels.setup_s_500", 5.0, "target", "s", "< 5 s", lambda v, b: v < b)
    add("tunnels.rss_mb_500", 150.0, "target", "MB", "< 150 MB", lambda v, b: v < b)
    add("tunnels.recover_s_500", 10.0, "target", "s", "< 10 s", lambda v, b: v < b)
    add("db.poll_rps_sqlite", 1000.0, "target", "1/s", ">= 1000", lambda v, b: v >= b)
    add(
        "db.poll_rps_postgresql",
        r("db.poll_rps_sqlite"),
        "sqlite",
        "1/s",
        ">= 1000",
        lambda v, b: v >= 1000,
    )
    add("workers.poll_rps_1", None, "(the baseline)", "1/s")
    add(
        "workers.poll_rps_2",
        r("workers.poll_rps_1"),
        "1 worker",
        "1/s",
        ">= 1.7 x 1 worker",
        lambda v, b: v >= 1.7 * b,
    )
    add(
        "workers.poll_rps_2_unpipelined",
        r("db.poll_rps_postgresql"),
        "1 process, unpipelined",
        "1/s",
    )
    add(
        "workers.poll_rps_replica",
        r("db.poll_rps_postgresql"),
        "1 process, unpipelined",
        "1/s",
    )
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if 0 < abs(value) < 0.1:
        return f"{value:.{digits + 1}f}"  # CPU per poll: 0.013 ms, not 0.01
    return f"{value:.{digits}f}"


def summary_line(row: Row) -> str:
    verdict = {True: "target met", False: "TARGET MISSED", None: ""}[row.met]
    target = f"  [{row.target}: {verdict}]" if row.target else ""
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    base = "" if row.baseline is None else f"{fmt(row.baseline)} "
    return (
        f"{row.figure:<34} {fmt(row.value):>9} {row.unit:<4} "
        f"baseline {base}({row.baseline_label}) ratio {ratio}{target}"
    )


def missing_keys(results: dict) -> list[str]:
    missing = []
    for section, keys in SCHEMA.items():
        if isinstance(keys, dict):
            for sub, subkeys in keys.items():
                for key in subkeys:
                    if _get(results, f"{section}.{sub}.{key}") is None:
                        missing.append(f"{section}.{sub}.{key}")
        else:
            for key in keys:
                if _get(results, f"{section}.{key}") is None:
                    missing.append(f"{section}.{key}")
    return missing


def write_json(path: Path, results: dict, table: list[Row]) -> None:
    data = dict(results)
    data["figures"] = [dict(asdict(row), ratio=row.ratio) for row in table]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def plot(path: Path, table: list[Row], title: str) -> None:
    """Horizontal bars: each figure's ratio to its baseline (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in table if row.ratio is not None and row.ratio > 0]
    colors = {True: "#2e7d32", False: "#c62828", None: "#757575"}
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(shown) + 1.4))
    names = [
        f"{row.figure} {'(higher is better) ' if row.higher_is_better else ''}"
        f"vs {row.baseline_label}"
        for row in shown
    ]
    ax.barh(range(len(shown)), [row.ratio for row in shown], color=[colors[r.met] for r in shown])
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, row in enumerate(shown):
        ax.text(row.ratio, i, f" {row.ratio:.2f}", va="center", fontsize=7)
    ax.set_xlabel("ratio to baseline (log); green: target met, red: missed, grey: no target")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
