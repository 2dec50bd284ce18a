"""`natslab bench` on a small run: every phase reports, the databases check out, nothing is left behind.

No timing assertions: the figures belong to the benchmark's output, not to the test suite.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

from dashboard.commands import bench
from dashboard.commands.args import UsageError, settings_from
from dashboard.commands.bench import figures, report

# `bench.run` is the command's entry point until the first run imports its `run` module, whose name
# then takes the package's attribute: keep the function.
run_bench = bench.run

PHASES = ("durability", "throughput", "scaling", "latency", "nak", "recovery", "ackWait", "dashboard")
TARGETS = (
    "pipeline", "latency-1000", "latency-3000", "nak", "dashboard-cpu", "dashboard-cpu-full", "dashboard-rss",
    "dashboard-keys", "first-frame",
)  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="natslab bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


SMALL = [
    "--events", "300",
    "--users", "20",
    "--repeat", "2",
    "--phase-seconds", "0.3",
    "--scale-listeners", "1,2",
    "--scale-users", "40",
    "--rates", "200,300",
    "--dashboard-rate", "200",
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
    code = run_bench(args, settings_from(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)

    assert result["ok"] is True
    assert result["check"]["ok"] is True, result["check"]["problems"]
    assert result["check"]["guarded"] == {"lost": 0, "duplicated": 0, "out_of_order": 0, "wrong_balance": 0, "pending": 0, "parked": 0}
    assert set(result["phases"]) == set(PHASES)
    phases = result["phases"]
    # Two rounds in alternating order, each with both phases; the verdict's figure is their median.
    rounds = phases["throughput"]["rounds"]
    assert [r["order"] for r in rounds] == [["raw", "pipeline"], ["pipeline", "raw"]]
    for r in rounds:
        raw, pipeline = r["raw"], r["pipeline"]
        # Every event acked once, plus once more per redelivery (a loaded machine can pass the 1 s ack wait).
        assert raw["events"] > 0 and sum(raw["perConsumer"]) - raw["redelivered"] == raw["events"]
        assert pipeline["events"] > 0 and sum(pipeline["perListener"].values()) == pipeline["events"]
        assert r["ratio"] == round(pipeline["eventsPerSecond"] / raw["eventsPerSecond"], 3)
    ratios = sorted(r["ratio"] for r in rounds)
    assert phases["throughput"]["ratio"] == {"median": sum(ratios) / 2, "min": ratios[0], "max": ratios[1], "n": 2}
    # The rounds' shape (2 listeners, 20 users) is not run again; the others are.
    assert [(run["listeners"], run["users"]) for run in phases["scaling"]["runs"]] == [(1, 20), (2, 40)]
    assert all(run["events"] > 0 for run in phases["scaling"]["runs"])
    # Both sync modes measured, each on a server of its own, every publish acknowledged.
    assert phases["durability"]["events"] == 300 and set(phases["durability"]["modes"]) == {"always", "interval"}
    for mode in phases["durability"]["modes"].values():
        assert mode["publishPerSecond"] > 0 and mode["pubAck"]["n"] == phases["durability"]["oneAtATime"]
    runs = phases["latency"]["runs"]
    # Rounds like the throughput's: each rate once per round.
    assert [(run["round"], run["rate"]) for run in runs] == [(1, 200), (1, 300), (2, 200), (2, 300)]
    for run in runs:
        rate = run["rate"]
        assert run["events"] == rate
        # Only events whose settling a listener reported are measured; the others are counted.
        assert run["publishToApplied"]["n"] + run["unreported"] == rate
        assert set(run["stages"]) == {"outbox", "relay", "delivery", "apply"}
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
    assert "[1/9] publishing with each sync mode" in err and "[9/9] checking the databases" in err
    data_dir = Path(re.search(r"embedded nats-server in (\S+)", err)[1])  # type: ignore[index]
    assert not data_dir.exists()


def throughput(raw: list[int], pipeline: list[int]) -> dict:
    """The throughput phase's figures for rounds of `raw` and `pipeline` events/s, 10 s each."""
    rounds = [
        {"raw": {"eventsPerSecond": r, "seconds": 10.0}, "pipeline": {"eventsPerSecond": p, "seconds": 10.0},
         "ratio": round(p / r, 3)}
        for r, p in zip(raw, pipeline, strict=True)
    ]  # fmt: skip

    def summary(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}

    return {
        "rounds": rounds,
        "raw": summary(raw),
        "pipeline": summary(pipeline),
        "ratio": summary([r["ratio"] for r in rounds]),
    }


def latency_run(rate: int, figures: dict, unreported: int = 0) -> dict:
    stage = {"n": figures["n"], "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0}
    return {
        "rate": rate, "offeredPerSecond": rate, "events": figures["n"] + unreported, "publishToApplied": figures,
        "stages": dict.fromkeys(("outbox", "relay", "delivery", "apply"), stage),
        "statusCoverage": round(figures["n"] / (figures["n"] + unreported), 4), "unreported": unreported,
    }  # fmt: skip


def test_table_names_every_measure_and_verdict() -> None:
    result = figures.BenchResult(figures.BenchConfig(events=300, users=20), {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})
    ms = {"n": 5, "p50_ms": 12.0, "p99_ms": 40.0, "max_ms": 41.0}
    result.phases = {
        "durability": {"modes": {
            "always": {"publishPerSecond": 4_500, "pubAck": {"n": 9, "p50_ms": 0.52, "p99_ms": 1.1}},
            "interval": {"publishPerSecond": 33_000, "pubAck": {"n": 9, "p50_ms": 0.18, "p99_ms": 0.7}},
        }},
        "throughput": throughput([10_000, 9_000, 11_000], [6_000, 8_100, 6_600]),
        "scaling": {"runs": [
            {"listeners": 1, "users": 20, "eventsPerSecond": 5_000, "deferrals": 0, "seconds": 11.0},
            {"listeners": 2, "users": 10_000, "eventsPerSecond": 7_000, "deferrals": 3, "seconds": 12.0},
        ]},
        "latency": {"runs": [
            latency_run(1_000, {"n": 9_990, "p50_ms": 8.0, "p99_ms": 24.0}, unreported=10),
            latency_run(3_000, {"n": 30_000, "p50_ms": 12.0, "p99_ms": 60.0}),
        ]},
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
    raw = lines["raw transport (publish_async, fetch + ack), 3 rounds of 10-10 s"]
    assert "10,000 events/s (9,000-11,000)" in raw
    pipeline = lines["guarded pipeline (outbox, 2 listeners), 3 rounds of 10-10 s"]
    # The median round (60%) decides, not the best (90%) nor the mean (70%).
    assert "6,600 events/s (6,000-8,100); 60% of raw (rounds 60%, 90%, 60%)" in pipeline
    assert ">= 80% of raw (median): MISSED" in pipeline
    assert "5,000 events/s, 50% of the raw median (0 deferrals, 11 s)" in lines["guarded pipeline, 1 listener, 20 users"]
    assert "7,000 events/s, 70% of the raw median" in lines["guarded pipeline, 2 listeners, 10,000 users"]
    at_1000 = lines["publish -> applied at 1,000/s (10,000 events, 10 unreported, 99.9% covered)"]
    assert "p50 8.0 ms, p99 24 ms" in at_1000 and "p99 < 25 ms: met" in at_1000
    at_3000 = lines["publish -> applied at 3,000/s (30,000 events, all reported)"]
    assert "p50 12 ms, p99 60 ms" in at_3000 and "p99 < 50 ms: MISSED" in at_3000
    assert "outbox 1.0 ms, 2.0 ms; relay 1.0 ms, 2.0 ms" in table
    assert "p50 5.00 s, p99 5.10 s" in table
    assert "n/a (skipped (--no-dashboard))" in table
    assert "targets: 2 of 4 met; missed: pipeline, latency-3000; 5 not measured" in table
    assert "check: not run" in table


def result_with(
    ratio_events: int, p99_ms: dict[int, float], nak_p99_ms: float, cpu: float, rss_mb: float, frame_s: float,
    cpu_full: float = 30.0, key_p99_ms: float = 40.0,
) -> figures.BenchResult:
    """A result whose figures sit where the caller puts them against each target (raw: 10,000/s)."""
    result = figures.BenchResult(figures.BenchConfig(events=300, users=20), {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})
    result.phases = {
        "throughput": throughput([10_000], [ratio_events]),
        "latency": {"runs": [latency_run(rate, {"n": 9, "p50_ms": 5.0, "p99_ms": p99}) for rate, p99 in p99_ms.items()]},
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


def test_the_latency_verdict_takes_the_median_run() -> None:
    result = result_with(9_000, {}, 200.0, cpu=10.0, rss_mb=100.0, frame_s=0.5)
    result.phases["latency"] = {"runs": [
        latency_run(1_000, {"n": 10_000, "p50_ms": 7.0, "p99_ms": 19.0}),
        latency_run(1_000, {"n": 10_000, "p50_ms": 9.0, "p99_ms": 169.0}),
        latency_run(1_000, {"n": 10_000, "p50_ms": 8.0, "p99_ms": 23.0}),
    ]}  # fmt: skip
    result.targets = report.targets(result)
    assert {t.name: t.verdict() for t in result.targets}["latency-1000"] == "met"
    lines = {line.split("  ")[0]: line for line in report.format_table(result).splitlines()}
    row = lines["publish -> applied at 1,000/s (3 runs of 10,000 events, all reported)"]
    assert "p50 8.0 ms, p99 23 ms (the median run; p99 of each: 19 ms, 169 ms, 23 ms)" in row
    assert "p99 < 25 ms: met" in row
    # Two runs: the worse of the two middle ones decides.
    result.phases["latency"]["runs"].pop(2)
    result.targets = report.targets(result)
    assert {t.name: t.verdict() for t in result.targets}["latency-1000"] == "MISSED"


def test_every_target_is_missed_at_its_limit() -> None:
    # Each figure sits exactly on its limit, which the target does not admit (or just under it, for
    # the one target that is a floor).
    result = result_with(
        ratio_events=int(10_000 * figures.TARGET_RATIO) - 10,
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
    assert f"targets: 0 of 9 met; missed: {', '.join(TARGETS)}" in table
    assert table.count(": MISSED") == 9


def test_targets_are_met_just_inside_their_limits() -> None:
    result = result_with(
        ratio_events=int(10_000 * figures.TARGET_RATIO),
        p99_ms={rate: limit - 0.1 for rate, limit in figures.TARGET_P99_MS.items()},
        nak_p99_ms=figures.TARGET_NAK_P99_MS - 0.1,
        cpu=figures.TARGET_DASHBOARD_CPU - 0.1,
        rss_mb=figures.TARGET_DASHBOARD_RSS_MB - 0.1,
        frame_s=figures.TARGET_FIRST_FRAME_S - 0.01,
        cpu_full=figures.TARGET_DASHBOARD_CPU_FULL - 0.1,
        key_p99_ms=figures.TARGET_DASHBOARD_KEY_P99_MS - 0.1,
    )
    assert [target.verdict() for target in result.targets] == ["met"] * 9
    assert "targets: 9 of 9 met\n" in report.format_table(result)


def test_one_missed_target_is_named_among_the_met() -> None:
    result = result_with(9_000, {1_000: 20.0, 3_000: 45.0}, 200.0, cpu=63.4, rss_mb=133.0, frame_s=0.8)
    table = report.format_table(result)
    assert "63.4% of one core" in table and "< 20% of a core: MISSED" in table
    assert "targets: 8 of 9 met; missed: dashboard-cpu" in table
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    assert "30.0% of one core" in lines["dashboard CPU at full speed"] and "< 40% of a core: met" in lines["dashboard CPU at full speed"]
    assert "133 MB after 1,000 events (5,000 in the stream)" in lines["dashboard peak RSS"]
    assert "80 MB at 0, 82 MB at 500, 82 MB at 1,000 events" in lines["dashboard RSS as the events went by"]
    assert "p50 20 ms, p99 40 ms" in lines["dashboard key -> screen at 1,000/s"] and "p99 < 50 ms: met" in table


def test_failover_bench_breaks_the_stream_leader_each_way_and_checks_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["--failover", "--failover-rounds", "1", "--json"])
    code = run_bench(args, settings_from(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True and result["check"]["ok"] is True, result["check"]["problems"]
    assert result["config"]["cluster"] == 3 and result["targets"] == []
    assert set(result["phases"]) == {"failover"}
    failover = result["phases"]["failover"]
    rounds = failover["rounds"]
    assert [(r["kind"], r["round"]) for r in rounds] == [("kill", 1), ("lame-duck", 1), ("term", 1)]
    for r in rounds:
        # Both probes published before and after the fault; the figures are the bench's to print.
        assert r["rawEvents"] > 0 and r["publisherEvents"] > 0
        assert r["rawLongestWait_s"] >= 0 and r["publisherLongestWait_s"] >= 0
        assert isinstance(r["probesOnThatNode"], bool)
        if r["kind"] != "term":  # a node stopped and started again may lead again; a killed or lame one not
            assert r["newLeader"] not in (None, r["node"])
    assert set(failover["kinds"]) == {"kill", "lame-duck", "term"}
    assert all(figures["raw"]["n"] == 1 for figures in failover["kinds"].values())
    # The probes' events are real account events, checked with the rest.
    # Every event a probe sent (or left in the outbox) went into the stream once.
    assert result["check"]["streamEvents"] == sum(r["rawEvents"] + r["publisherEvents"] for r in rounds)
    assert "[1/2] the stream leader's failover" in err and "[2/2] checking the databases" in err
    data_dir = Path(re.search(r"embedded nats-servers in (\S+)", err)[1])  # type: ignore[index]
    assert not data_dir.exists()


def test_failover_table_names_each_fault_and_probe() -> None:
    config = figures.BenchConfig(failover=True, cluster=3, failover_rounds=3)
    result = figures.BenchResult(config, {"cpus": 2, "loadavg": [1.0, 1.0, 1.0]})

    def spread(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}

    result.phases = {"failover": {"kinds": {
        "kill": {"raw": spread([5.1, 5.8, 6.3]), "publisher": spread([6.0, 10.1, 10.2]), "newLeader": spread([5.0, 5.5, 6.0])},
        "lame-duck": {"raw": spread([0.05]), "publisher": spread([0.01]), "newLeader": spread([1.1])},
    }}}  # fmt: skip
    table = report.format_table(result)
    assert table.splitlines()[0].startswith("natslab bench --failover: cluster of 3, 2 guarded listeners")
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    raw = lines["SIGKILL of the stream leader -> publishing again, raw js.publish probe (0.25 s timeout, retried), 3 rounds"]
    assert "5.80 s (5.10-6.30)" in raw
    publisher = lines["SIGKILL of the stream leader -> publishing again, through the publisher (outbox, relay), 3 rounds"]
    assert "10.10 s (6.00-10.20)" in publisher
    assert "0.05 s" in lines["lame duck (SIGUSR2) of the stream leader -> publishing again, raw js.publish probe (0.25 s timeout, retried), 1 round"]
    assert "targets" not in table and table.endswith("check: not run")


def test_bench_takes_a_cluster_only_for_the_failover_measures() -> None:
    args = parse(["--cluster", "3"])
    with pytest.raises(UsageError, match="--cluster goes with --failover"):
        run_bench(args, settings_from(args))


def test_partitioned_bench_compares_both_groups_on_the_same_events(capsys: pytest.CaptureFixture[str]) -> None:
    # 300 events a phase over 20 users; 1 event in 30 is the slow user's (10 events, 50 ms each).
    args = parse(["--partitioned", "--events", "300", "--users", "20", "--slow-every", "30", "--json"])
    code = run_bench(args, settings_from(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True and result["targets"] == []
    # Both databases hold every event once, in order, with the right balances.
    check = result["check"]
    assert check["ok"] is True, check["problems"]
    assert check["guarded"] == {"lost": 0, "duplicated": 0, "out_of_order": 0, "wrong_balance": 0, "pending": 0, "parked": 0}
    assert check["partitioned"] == check["guarded"]  # judged by the same check, with the same result
    assert check["streamEvents"] == 600
    assert set(result["phases"]) == {"partitioned"}
    phase = result["phases"]["partitioned"]
    assert phase["slowEvery"] == 30 and phase["slowMs"] == 50 and phase["partitions"] == 3
    assert set(phase["runs"]) == {"plain", "slowUser"}
    for key, run in phase["runs"].items():
        assert run["events"] == 300
        assert run["slowEvents"] == (10 if key == "slowUser" else 0)
        for mode in ("guarded", "partitioned"):
            group = run["groups"][mode]
            assert group["applied"] == 300, (key, mode)
            assert group["eventsPerSecond"] > 0 and group["seconds"] > 0
            latency = group["publishToApplied"]
            assert latency["n"] == 300 and 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
            assert set(group["counters"]) == {"redelivered", "deferred", "duplicates", "conflicts", "parked"}
            assert group["counters"]["conflicts"] == group["counters"]["parked"] == 0
            assert set(group["perThousand"]) == {"redelivered", "guardActs"}
            assert sum(group["perListener"].values()) == 300
            assert set(group["batchesPerListener"]) == set(group["perListener"])
            assert all(0 < group["batchesPerListener"][name] <= count for name, count in group["perListener"].items())
            assert group["lastStored_s"] > 0 and set(group["partitionDone_s"]) <= {"0", "1", "2"}
        # The partitioned group never needs the guard: each user's events come in order.
        assert run["groups"]["partitioned"]["counters"]["deferred"] == 0
        # Two listeners each: P1 has partitions 0 and 2, P2 partition 1.
        assert set(run["groups"]["partitioned"]["perListener"]) <= {"P1", "P2"}
        assert set(run["groups"]["guarded"]["perListener"]) <= {"A", "B"}
    for mode in ("guarded", "partitioned"):
        group = phase["runs"]["slowUser"]["groups"][mode]
        # The slow user, its partition-mates and the others: every event in one of them.
        assert group["slowUser"]["n"] == 10
        assert group["partitionMates"]["n"] > 0 and group["partitionMateUsers"] > 0
        assert group["slowUser"]["n"] + group["partitionMates"]["n"] + group["otherUsers"]["n"] == 300
        assert group["partitionMates"]["p50_ms"] > 0 and group["otherUsers"]["p50_ms"] > 0
        assert group["othersPerSecond"] > 0
        # Each slow event took at least its 50 ms before it was applied.
        assert group["slowUser"]["p50_ms"] >= 50
    assert "[1/2] guarded and partitioned groups, the same events" in err and "[2/2] checking the databases" in err

    # The table, from these figures: a column per group, both phases, the slow user named.
    config = figures.BenchConfig(**result["config"])
    table_result = figures.BenchResult(config, result["machine"], phases=result["phases"])
    table = report.format_table(table_result)
    assert table.splitlines()[0].startswith("natslab bench --partitioned: 300 events per phase over 20 users")
    assert "one slow user: slowuser, 1 event in 30 (10), 50 ms per event" in table
    header = next(line for line in table.splitlines() if line.startswith("measure"))
    assert header.split() == ["measure", "guarded", "partitioned"]
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    for title in ("no faults", "one slow user"):
        assert f"{title}: throughput, first publish -> all 300 applied" in lines
        assert lines[f"{title}: throughput, first publish -> all 300 applied"].count("events/s") == 2
        assert f"{title}: per 1,000 events" in lines
    mates = next(line for line in table.splitlines() if "its partition-mates'" in line)
    assert mates.count("p50") == 2


def test_partitioned_options_go_with_partitioned() -> None:
    for argv, message in (
        (["--partitions", "4"], "--partitions goes with --partitioned"),
        (["--slow-every", "10"], "--slow-every goes with --partitioned"),
        (["--partitioned", "--failover"], "one at a time"),
    ):
        args = parse(argv)
        with pytest.raises(UsageError, match=message):
            run_bench(args, settings_from(args))
