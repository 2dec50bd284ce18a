"""The verdicts and the table of `natslab bench`."""

from __future__ import annotations

from typing import Any

from dashboard.commands.bench.failover import failover_rows
from dashboard.commands.bench.figures import (
    TARGET_DASHBOARD_CPU,
    TARGET_DASHBOARD_CPU_FULL,
    TARGET_DASHBOARD_KEY_P99_MS,
    TARGET_DASHBOARD_RSS_MB,
    TARGET_FIRST_FRAME_S,
    TARGET_NAK_P99_MS,
    TARGET_P99_MS,
    TARGET_RATIO,
    BenchResult,
    Target,
)
from dashboard.commands.bench.partitioned import partitioned_rows
from dashboard.lab.natsserver import SYNC_MODES, sync_label


def targets(result: BenchResult) -> list[Target]:
    """The issue's targets, judged on this run's figures; None where a figure is missing."""
    phases = result.phases
    ratio = phases.get("throughput", {}).get("ratio", {}).get("median")
    runs = {rate: median for rate, (median, _) in latency_by_rate(result).items()}
    nak = phases.get("nak", {}).get("earlyPublishToApplied", {}).get("p99_ms")
    dash = phases.get("dashboard", {})
    cpu, rss, frame = dash.get("cpuPercentAtRate"), dash.get("peakRssMB"), dash.get("firstFrame_s")
    cpu_full, keys = dash.get("cpuPercentFullSpeed"), dash.get("keyToScreen", {}).get("p99_ms")
    no_dashboard = "n/a" if dash.get("available") else f"n/a ({dash.get('reason', 'not measured')})"

    def target(name: str, goal: str, value: float | None, limit: float, figure: str, unmeasured: str = "n/a") -> Target:
        if value is None:
            return Target(name, goal, None, unmeasured)
        return Target(name, goal, value >= limit if name == "pipeline" else value < limit, figure)

    latency = []
    for rate, limit in TARGET_P99_MS.items():
        p99 = runs.get(rate, {}).get("publishToApplied", {}).get("p99_ms")
        latency.append(target(f"latency-{rate}", f"p99 < {limit:g} ms", p99, limit, f"{p99} ms"))
    return [
        target("pipeline", f">= {TARGET_RATIO:.0%} of raw (median)", ratio, TARGET_RATIO, f"{ratio or 0:.0%}"),
        *latency,
        target("nak", f"p99 < {TARGET_NAK_P99_MS:g} ms", nak, TARGET_NAK_P99_MS, f"{nak} ms"),
        target(
            "dashboard-cpu",
            f"< {TARGET_DASHBOARD_CPU:g}% of a core",
            cpu,
            TARGET_DASHBOARD_CPU,
            f"{cpu}%",
            no_dashboard,
        ),
        target(
            "dashboard-cpu-full",
            f"< {TARGET_DASHBOARD_CPU_FULL:g}% of a core",
            cpu_full,
            TARGET_DASHBOARD_CPU_FULL,
            f"{cpu_full}%",
            no_dashboard,
        ),
        target(
            "dashboard-rss",
            f"< {TARGET_DASHBOARD_RSS_MB:g} MB",
            rss,
            TARGET_DASHBOARD_RSS_MB,
            f"{rss} MB",
            no_dashboard,
        ),
        target(
            "dashboard-keys",
            f"p99 < {TARGET_DASHBOARD_KEY_P99_MS:g} ms",
            keys,
            TARGET_DASHBOARD_KEY_P99_MS,
            f"{keys} ms",
            no_dashboard,
        ),
        target("first-frame", f"< {TARGET_FIRST_FRAME_S:g} s", frame, TARGET_FIRST_FRAME_S, f"{frame} s", no_dashboard),
    ]


def latency_by_rate(result: BenchResult) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Offered rate -> (the run whose p99 is the median, every run at that rate). With an even
    number of runs the higher of the two middle ones: a verdict should not round in its own favour."""
    by_rate: dict[int, list[dict[str, Any]]] = {}
    for run in result.phases.get("latency", {}).get("runs", []):
        by_rate.setdefault(run["rate"], []).append(run)
    picked = {}
    for rate, runs in by_rate.items():
        ordered = sorted(runs, key=lambda run: _p99(run) if _p99(run) is not None else float("inf"))
        picked[rate] = (ordered[len(ordered) // 2], runs)
    return picked


def _p99(run: dict[str, Any]) -> float | None:
    return run["publishToApplied"].get("p99_ms")


def _ms(figures: dict[str, Any]) -> str:
    if not figures or figures.get("p50_ms") is None:
        return "-"
    return f"p50 {_duration(figures['p50_ms'])}, p99 {_duration(figures['p99_ms'])}"


def _trail(trail: list) -> str:
    """`89 MB at 1,000 events, ... 101 MB at 100,000`: a few of the RSS samples, the last included."""
    if not trail:
        return "-"
    picked = [trail[index] for index in sorted({0, len(trail) // 3, 2 * len(trail) // 3, len(trail) - 1})]
    return ", ".join(f"{mb:.0f} MB at {events:,}" for events, mb in picked) + " events"


def _duration(ms: float) -> str:
    """Whole milliseconds, or tenths below 10 ms (a PubAck takes well under one), or seconds."""
    if ms < 10:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _spread(figures: dict[str, Any], unit: str = "") -> str:
    """`4,790 events/s (4,512-5,104)`: the median, and the lowest and highest of the rounds."""
    if not figures:
        return "-"
    if figures["n"] == 1:
        return f"{figures['median']:,.0f}{unit}"
    return f"{figures['median']:,.0f}{unit} ({figures['min']:,.0f}-{figures['max']:,.0f})"


def _throughput_rows(result: BenchResult, verdict: str) -> list[tuple[str, str, str]]:
    """The rounds' medians and spreads, then one row per scaling run."""
    config, phases = result.config, result.phases
    through = phases.get("throughput", {})
    if not through:
        return []
    done = through["rounds"]
    ratio = through["ratio"]
    ratios = ", ".join(f"{r['ratio']:.0%}" for r in done)
    seconds = [r[kind]["seconds"] for r in done for kind in ("raw", "pipeline")]
    rounds = f"{len(done)} round{'s' if len(done) > 1 else ''} of {min(seconds):.0f}-{max(seconds):.0f} s"
    raw_median = through["raw"]["median"]
    rows = [
        (f"raw transport (publish_async, fetch + ack), {rounds}", _spread(through["raw"], " events/s"), ""),
        (
            f"guarded pipeline (outbox, {config.listeners} listeners), {rounds}",
            f"{_spread(through['pipeline'], ' events/s')}; {ratio['median']:.0%} of raw (rounds {ratios})",
            verdict,
        ),
    ]
    for run in phases.get("scaling", {}).get("runs", []):
        listeners = f"{run['listeners']} listener{'s' if run['listeners'] > 1 else ''}"
        rows.append(
            (
                f"guarded pipeline, {listeners}, {run['users']:,} users",
                f"{run['eventsPerSecond']:,} events/s, {run['eventsPerSecond'] / raw_median:.0%} of the raw median"
                f" ({run['deferrals']:,} deferrals, {run['seconds']:.0f} s)",
                "",
            )
        )
    return rows


def _latency_rows(result: BenchResult, verdicts: dict[str, Target]) -> list[tuple[str, str, str]]:
    """Per offered rate: the median run's figures, every run's p99, and where the median run's time went."""
    rows = []
    for rate, (run, runs) in latency_by_rate(result).items():
        target = verdicts.get(f"latency-{rate}")
        events = sum(r["events"] for r in runs)
        unreported = sum(r["unreported"] for r in runs)
        reported = "all reported" if unreported == 0 else f"{unreported:,} unreported, {1 - unreported / events:.1%} covered"
        shape = f"{len(runs)} runs of {run['events']:,} events" if len(runs) > 1 else f"{run['events']:,} events"
        figures = _ms(run["publishToApplied"])
        if len(runs) > 1:
            p99s = ", ".join(_duration(_p99(r)) if _p99(r) is not None else "-" for r in runs)
            figures += f" (the median run; p99 of each: {p99s})"
        rows.append(
            (
                f"publish -> applied at {run['offeredPerSecond']:,}/s ({shape}, {reported})",
                figures,
                f"{target.goal}: {target.verdict()}" if target is not None else "",
            )
        )
        stages = run["stages"]
        rows.append(
            (
                "  where the median run's time went (p50, p99)",
                "; ".join(
                    f"{name} {_duration(stages[name]['p50_ms'])}, {_duration(stages[name]['p99_ms'])}"
                    for name in ("outbox", "relay", "delivery", "apply")
                    if stages[name]["n"]
                ),
                "",
            )
        )
    return rows


def _lines(rows: list[tuple[str, str, str]]) -> list[str]:
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    return [f"{name:<{width}}  {value:<{value_width}}  {target}".rstrip() for name, value, target in rows]


def _load(result: BenchResult) -> str:
    machine = result.machine
    load = f"load {'/'.join(f'{v:.1f}' for v in machine.get('loadavg', []))}" if machine.get("loadavg") else ""
    return f"{machine['cpus']} cores, {load} at the end; {result.seconds:.0f} s"


def _check_lines(result: BenchResult) -> list[str]:
    if result.check is None:
        return ["check: not run"]
    return [f"check: {result.check.verdict_line()}", *(f"problem: {problem}" for problem in result.check.problems)]


def format_partitioned(result: BenchResult) -> str:
    """`natslab bench --partitioned`: what ran, the slow user, one row per measure with a column per group."""
    config, phase = result.config, result.phases.get("partitioned", {})
    lines = [
        f"natslab bench --partitioned: {config.events:,} events per phase over {config.users:,} users, published"
        f" once to the stream and consumed at once by {config.listeners} guarded and {config.listeners} partitioned"
        f" listeners ({config.partitions} partitions, batch {config.batch}); ack wait {config.ack_wait_s:g} s,"
        f" sync {sync_label(config.sync)}; {_load(result)}",
    ]
    if phase:
        run = phase["runs"].get("slowUser", {})
        lines.append(
            f"one slow user: {phase['slowUser']}, 1 event in {phase['slowEvery']} ({run.get('slowEvents', 0):,}),"
            f" {phase['slowMs']} ms per event in every listener of both groups; its partition is p{phase['slowPartition']} (* below)"
        )
    lines += ["", *_lines([("measure", "guarded", "partitioned"), *partitioned_rows(phase)]), ""]
    return "\n".join(lines + _check_lines(result))


def format_failover(result: BenchResult) -> str:
    """`natslab bench --failover`: one heading, two rows per kind of fault, the check."""
    config = result.config
    lines = [
        f"natslab bench --failover: cluster of {config.cluster}, {config.listeners} guarded listeners,"
        f" ack wait {config.ack_wait_s:g} s, sync {sync_label(config.sync)}; {_load(result)}",
        "",
        *_lines([("measure", "result (median, min-max)", ""), *failover_rows(result.phases.get("failover", {}))]),
        "",
    ]
    return "\n".join(lines + _check_lines(result))


def format_table(result: BenchResult) -> str:
    """The results as a table: measure, figure, target and verdict; then the targets and the check."""
    if result.config.failover:
        return format_failover(result)
    if result.config.partitioned:
        return format_partitioned(result)
    config, phases = result.config, result.phases
    verdicts = {target.name: target for target in result.targets}

    def verdict(name: str) -> str:
        target = verdicts[name]
        return f"{target.goal}: {target.verdict()}"

    nak, ack_wait, recovery = phases.get("nak", {}), phases.get("ackWait", {}), phases.get("recovery", {})
    waits = f"ack wait {config.ack_wait_s:g} s"
    rows: list[tuple[str, str, str]] = [("measure", "result", "target")]
    durability = phases.get("durability", {}).get("modes", {})
    rows += [
        (
            f"publish alone, sync {sync_label(mode)}",
            f"{durability[mode]['publishPerSecond']:,} events/s; one at a time {_ms(durability[mode]['pubAck'])}",
            "",
        )
        for mode in SYNC_MODES
        if mode in durability
    ]
    rows += _throughput_rows(result, verdict("pipeline"))
    rows += _latency_rows(result, verdicts)
    rows += [
        (
            "early event -> applied, --defer nak",
            f"{_ms(nak.get('earlyPublishToApplied', {}))} ({nak.get('pairs', 0)} events)",
            verdict("nak"),
        ),
        (
            "early event -> applied, --defer ack-wait",
            f"{_ms(ack_wait.get('earlyPublishToApplied', {}))} ({ack_wait.get('pairs', 0)} events)",
            waits,
        ),
        ("SIGKILL of a holder -> applied elsewhere", f"{recovery.get('killToApplied_s', 0):.2f} s", waits),
    ]
    dash = phases.get("dashboard", {})
    if dash.get("available"):
        rate = f"{dash['offeredPerSecond']:,}/s"
        full = dash.get("cpuPercentFullSpeed")
        stored = f" ({dash['storedAtEnd']:,} in the stream)" if dash.get("storedAtEnd") else ""
        rows += [
            (f"dashboard CPU at {rate}", f"{dash['cpuPercentAtRate']:.1f}% of one core", verdict("dashboard-cpu")),
            ("dashboard CPU at full speed", "-" if full is None else f"{full:.1f}% of one core",
             verdict("dashboard-cpu-full")),
            ("dashboard peak RSS", f"{dash['peakRssMB']:.0f} MB after {dash['eventsWhileRunning']:,} events{stored}",
             verdict("dashboard-rss")),
            ("dashboard RSS as the events went by", _trail(dash.get("rssTrailMB", [])), ""),
            ("dashboard start -> first full frame", f"{dash['firstFrame_s']:.2f} s", verdict("first-frame")),
            (f"dashboard key -> screen at {rate}", _ms(dash.get("keyToScreen", {})), verdict("dashboard-keys")),
        ]  # fmt: skip
    else:
        rows.append(("dashboard", f"n/a ({dash.get('reason', 'not measured')})", ""))
    lines = [
        f"natslab bench: {config.users:,} users, {config.listeners} guarded"
        f" listeners (batch {config.batch}), ack wait {config.ack_wait_s:g} s, sync {sync_label(config.sync)};"
        f" {_load(result)}",
        "",
    ]
    lines += _lines(rows)
    lines.append("")
    judged = [target for target in result.targets if target.met is not None]
    missed = [target.name for target in judged if not target.met]
    lines.append(
        f"targets: {len(judged) - len(missed)} of {len(judged)} met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
        + (f"; {len(result.targets) - len(judged)} not measured" if len(judged) < len(result.targets) else "")
    )
    return "\n".join(lines + _check_lines(result))
