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

from dashboard import bench
from dashboard.settings import Settings

PHASES = ("raw", "pipeline", "latency", "nak", "recovery", "ackWait", "dashboard")
TARGETS = ("pipeline", "latency", "nak", "dashboard-cpu", "dashboard-rss", "first-frame")


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
    code = bench.run_cli(parse(argv), Settings(data_dir=tmp_path / "unused"))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)

    assert result["ok"] is True
    assert result["check"]["ok"] is True, result["check"]["problems"]
    assert result["check"]["guarded"] == {"lost": 0, "duplicated": 0, "out_of_order": 0, "wrong_balance": 0}
    assert set(result["phases"]) == set(PHASES)
    phases = result["phases"]
    assert phases["raw"]["events"] == 300 and sum(phases["raw"]["perConsumer"]) == 300
    assert phases["raw"]["eventsPerSecond"] > 0
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
    assert [target["name"] for target in result["targets"]] == list(TARGETS)
    assert {target["verdict"] for target in result["targets"]} <= {"met", "MISSED", "n/a"}

    # Progress went to stderr, phase by phase, and the temporary data dir is gone.
    assert "[1/8] raw transport" in err and "[8/8] checking the databases" in err
    data_dir = Path(re.search(r"embedded nats-server in (\S+)", err)[1])  # type: ignore[index]
    assert not data_dir.exists()


def test_table_names_every_measure_and_verdict() -> None:
    result = bench.BenchResult(bench.BenchConfig(events=300, users=20), {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})
    ms = {"n": 5, "p50_ms": 12.0, "p99_ms": 40.0, "max_ms": 41.0}
    result.phases = {
        "raw": {"eventsPerSecond": 10_000, "publishPerSecond": 20_000},
        "pipeline": {"eventsPerSecond": 6_000, "deferrals": 12},
        "latency": {"offeredPerSecond": 1_000, "publishToApplied": ms},
        "nak": {"earlyPublishToApplied": ms, "pairs": 5},
        "ackWait": {"earlyPublishToApplied": {"n": 5, "p50_ms": 5000.0, "p99_ms": 5100.0}, "pairs": 5},
        "recovery": {"killToApplied_s": 4.9},
        "dashboard": {"available": False, "reason": "skipped (--no-dashboard)"},
    }
    result.targets = bench.targets(result)
    table = bench.format_table(result)
    assert "6,000 events/s, 60% of raw (12 deferrals)" in table
    assert ">= 50% of raw: met" in table
    assert "p50 12 ms, p99 40 ms" in table and "p99 < 50 ms: met" in table
    assert "p50 5.00 s, p99 5.10 s" in table
    assert "n/a (skipped (--no-dashboard))" in table
    assert "targets: 3 of 3 met; 3 not measured" in table
    assert "check: not run" in table
