"""`natslab bench` on a small run: every phase reports, the databases check out, nothing is left behind.

No timing assertions: the figures belong to the benchmark's output, not to the test suite.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from dashboard.commands import bench
from dashboard.commands.args import settings_from
from dashboard.commands.bench import figures, report

PHASES = ("raw", "durability", "pipeline", "latency", "nak", "recovery", "ackWait", "dashboard")
TARGETS = ("pipeline", "latency", "nak", "dashboard-cpu", "dashboard-cpu-full", "dashboard-rss", "dashboard-keys", "first-frame")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="natslab bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


SMALL = [
    "--events", "300",
    "--users", "20",
    "--rate", "200",
    "--latency-seconds", "1",
    "--pairs", "5",
    "--ack-wait", "1",
    "--dashboard-events", "300",
    "--dashboard-seconds", "1",
]  # fmt: skip


def test_small_bench_reports_every_phase_and_a_clean_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_dashboard = shutil.which("tmux") is not None
    argv = [*SMALL, "--json", *([] if with_dashboard else ["--no-dashboard"])]
    args = parse(argv)
    code = bench.run(args, settings_from(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)

    assert result["ok"] is True
    assert result["check"]["ok"] is True, result["check"]["problems"]
    assert result["check"]["guarded"] == {"lost": 0, "duplicated": 0, "out_of_order": 0, "wrong_balance": 0, "pending": 0, "parked": 0}
    assert set(result["phases"]) == set(PHASES)
    phases = result["phases"]
    # Every event acked once, plus once more per redelivery (a loaded machine can pass the 1 s ack wait).
    assert phases["raw"]["events"] == 300 and sum(phases["raw"]["perConsumer"]) - phases["raw"]["redelivered"] == 300
    assert phases["raw"]["eventsPerSecond"] > 0
    # Both sync modes measured, each on a server of its own, every publish acknowledged.
    assert phases["durability"]["events"] == 300 and set(phases["durability"]["modes"]) == {"always", "interval"}
    for mode in phases["durability"]["modes"].values():
        assert mode["publishPerSecond"] > 0 and mode["pubAck"]["n"] == phases["durability"]["oneAtATime"]
    assert phases["pipeline"]["events"] == 300 and sum(phases["pipeline"]["perListener"].values()) == 300
    assert phases["latency"]["publishToApplied"]["n"] == phases["latency"]["events"] == 200
    assert set(phases["latency"]["stages"]) == {"outbox", "relay", "delivery", "apply"}
    for key, defer in (("nak", "nak"), ("ackWait", "ack-wait")):
        assert phases[key]["defer"] == defer
        assert phases[key]["earlyPublishToApplied"]["n"] == 5
        # Every early event was found early (deferred) before its predecessor was published.
        assert phases[key]["notSeenDeferred"] == 0
    assert phases["recovery"]["appliedBy"] != phases["recovery"]["killed"]
    assert phases["recovery"]["deliveryCount"] >= 2
    if with_dashboard:
        # The dashboard really ran: a full frame, the help screen answered `?`, /proc was read.
        dashboard = phases["dashboard"]
        assert dashboard["available"] is True, dashboard
        assert dashboard["keyToScreen"]["n"] >= 2
        assert dashboard["peakRssMB"] > 0 and dashboard["eventsWhileRunning"] == 300
        # RSS sampled as the events went by, ending with all of them.
        assert dashboard["rssTrailMB"][-1][0] == 300 and all(mb > 0 for _, mb in dashboard["rssTrailMB"])
    assert [target["name"] for target in result["targets"]] == list(TARGETS)
    assert {target["verdict"] for target in result["targets"]} <= {"met", "MISSED", "n/a"}

    # Progress went to stderr, phase by phase, and the temporary data dir is gone.
    assert "[1/9] raw transport" in err and "[9/9] checking the databases" in err
    data_dir = Path(re.search(r"embedded nats-server in (\S+)", err)[1])  # type: ignore[index]
    assert not data_dir.exists()


def test_table_names_every_measure_and_verdict() -> None:
    result = figures.BenchResult(figures.BenchConfig(events=300, users=20), {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})
    ms = {"n": 5, "p50_ms": 12.0, "p99_ms": 40.0, "max_ms": 41.0}
    result.phases = {
        "raw": {"eventsPerSecond": 10_000, "publishPerSecond": 20_000},
        "durability": {"modes": {
            "always": {"publishPerSecond": 4_500, "pubAck": {"n": 9, "p50_ms": 0.52, "p99_ms": 1.1}},
            "interval": {"publishPerSecond": 33_000, "pubAck": {"n": 9, "p50_ms": 0.18, "p99_ms": 0.7}},
        }},
        "pipeline": {"eventsPerSecond": 6_000, "deferrals": 12},
        "latency": {"offeredPerSecond": 1_000, "publishToApplied": ms},
        "nak": {"earlyPublishToApplied": ms, "pairs": 5},
        "ackWait": {"earlyPublishToApplied": {"n": 5, "p50_ms": 5000.0, "p99_ms": 5100.0}, "pairs": 5},
        "recovery": {"killToApplied_s": 4.9},
        "dashboard": {"available": False, "reason": "skipped (--no-dashboard)"},
    }
    result.targets = report.targets(result)
    table = report.format_table(result)
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    assert "4,500 events/s; one at a time p50 0.5 ms, p99 1.1 ms" in lines["publish alone, sync always"]
    assert "33,000 events/s; one at a time p50 0.2 ms, p99 0.7 ms" in lines["publish alone, sync every 2m"]
    assert "sync always;" in table.splitlines()[0]
    assert "6,000 events/s, 60% of raw (12 deferrals)" in table
    assert ">= 50% of raw: met" in table
    assert "p50 12 ms, p99 40 ms" in table and "p99 < 50 ms: met" in table
    assert "p50 5.00 s, p99 5.10 s" in table
    assert "n/a (skipped (--no-dashboard))" in table
    assert "targets: 3 of 3 met; 5 not measured" in table
    assert "check: not run" in table


def result_with(
    ratio_events: int, p99_ms: float, nak_p99_ms: float, cpu: float, rss_mb: float, frame_s: float,
    cpu_full: float = 30.0, key_p99_ms: float = 40.0,
) -> figures.BenchResult:
    """A result whose figures sit where the caller puts them against each target (raw: 10,000/s)."""
    result = figures.BenchResult(figures.BenchConfig(events=300, users=20), {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})
    result.phases = {
        "raw": {"eventsPerSecond": 10_000, "publishPerSecond": 20_000},
        "pipeline": {"eventsPerSecond": ratio_events, "deferrals": 0},
        "latency": {"offeredPerSecond": 1_000, "publishToApplied": {"n": 9, "p50_ms": 5.0, "p99_ms": p99_ms}},
        "nak": {"earlyPublishToApplied": {"n": 5, "p50_ms": 100.0, "p99_ms": nak_p99_ms}, "pairs": 5},
        "ackWait": {"earlyPublishToApplied": {"n": 5, "p50_ms": 5000.0, "p99_ms": 5100.0}, "pairs": 5},
        "recovery": {"killToApplied_s": 4.9},
        "dashboard": {
            "available": True, "offeredPerSecond": 1_000, "cpuPercentAtRate": cpu, "peakRssMB": rss_mb,
            "cpuPercentFullSpeed": cpu_full, "eventsWhileRunning": 1_000, "firstFrame_s": frame_s,
            "keyToScreen": {"n": 3, "p50_ms": 20.0, "p99_ms": key_p99_ms}, "storedAtEnd": 5_000,
            "rssTrailMB": [[0, 80.0], [500, 81.5], [1_000, 82.0]],
        },
    }  # fmt: skip
    result.targets = report.targets(result)
    return result


def test_every_target_is_missed_at_its_limit() -> None:
    # Each figure sits exactly on its limit, which the target does not admit (or just under it, for
    # the one target that is a floor).
    result = result_with(
        ratio_events=int(10_000 * figures.TARGET_RATIO) - 1,
        p99_ms=figures.TARGET_P99_MS,
        nak_p99_ms=figures.TARGET_NAK_P99_MS,
        cpu=figures.TARGET_DASHBOARD_CPU,
        rss_mb=figures.TARGET_DASHBOARD_RSS_MB,
        frame_s=figures.TARGET_FIRST_FRAME_S,
        cpu_full=figures.TARGET_DASHBOARD_CPU_FULL,
        key_p99_ms=figures.TARGET_DASHBOARD_KEY_P99_MS,
    )
    assert [(target.name, target.verdict()) for target in result.targets] == [(name, "MISSED") for name in TARGETS]
    table = report.format_table(result)
    assert f"targets: 0 of 8 met; missed: {', '.join(TARGETS)}" in table
    assert table.count(": MISSED") == 8


def test_targets_are_met_just_inside_their_limits() -> None:
    result = result_with(
        ratio_events=int(10_000 * figures.TARGET_RATIO),
        p99_ms=figures.TARGET_P99_MS - 0.1,
        nak_p99_ms=figures.TARGET_NAK_P99_MS - 0.1,
        cpu=figures.TARGET_DASHBOARD_CPU - 0.1,
        rss_mb=figures.TARGET_DASHBOARD_RSS_MB - 0.1,
        frame_s=figures.TARGET_FIRST_FRAME_S - 0.01,
        cpu_full=figures.TARGET_DASHBOARD_CPU_FULL - 0.1,
        key_p99_ms=figures.TARGET_DASHBOARD_KEY_P99_MS - 0.1,
    )
    assert [target.verdict() for target in result.targets] == ["met"] * 8
    assert "targets: 8 of 8 met\n" in report.format_table(result)


def test_one_missed_target_is_named_among_the_met() -> None:
    result = result_with(5_000, 30.0, 200.0, cpu=63.4, rss_mb=133.0, frame_s=0.8)
    table = report.format_table(result)
    assert "63.4% of one core" in table and "< 20% of a core: MISSED" in table
    assert "targets: 7 of 8 met; missed: dashboard-cpu" in table
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    assert "30.0% of one core" in lines["dashboard CPU at full speed"] and "< 40% of a core: met" in lines["dashboard CPU at full speed"]
    assert "133 MB after 1,000 events (5,000 in the stream)" in lines["dashboard peak RSS"]
    assert "80 MB at 0, 82 MB at 500, 82 MB at 1,000 events" in lines["dashboard RSS as the events went by"]
    assert "p50 20 ms, p99 40 ms" in lines["dashboard key -> screen at 1,000/s"] and "p99 < 50 ms: met" in table
