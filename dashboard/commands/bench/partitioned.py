"""Guarded against partitioned (`natslab bench --partitioned`): the same events, published once,
consumed by both groups at the same time (L listeners each), in two phases:

- `plain`: no faults;
- `slowUser`: one user, SLOW_USER, has one event in `--slow-every`, and each of its events takes
  `--slow-ms` to process in every listener of every group (`slow-user`). A partitioned listener
  waits for each of them in order, so the other users of the slow user's partition (its
  partition-mates) wait too; a guarded listener takes them apart in a slow lane and goes on with
  the rest, and the guard defers the slow user's events that overtake each other.

Each phase publishes its events straight to the event stream, PUBLISH_WINDOW in flight like the
relay, each event made as it is sent. Not through the outbox: its relay is slower than either group,
so both groups would wait for it alike (tried: both finished within 0.3 s of the stream's last event,
3 s behind the outbox). The users are the same in both phases, numbered on. Then it waits until
both databases hold every event and both groups have drained and counted.

Per group: throughput from the phase's first `createdAt` to the last `applied_at` in that group's
database; publish -> applied per event, `applied_at` minus `createdAt` (both ISO UTC from this
machine's clock: the first stamped as the event is made and published, the second as the listener's
batch transaction begins); in the slow phase the same for the slow user, its partition-mates and the
other users apart; the listener counters' redeliveries and the guard's acts (deferred, duplicates)
per 1,000 events; what the group's listeners used of the CPU; when the group's stream stored the
phase's last event (the partitioned group's is the sourced copy); when each partition's last event
was applied.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from dashboard.commands.bench.dashboard_cost import proc_cpu_seconds
from dashboard.commands.bench.figures import AccountsReader, AppliedRow, parse_iso, spread, traffic
from dashboard.commands.bench.throughput import PUBLISH_WINDOW
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.traffic import Request
from dashboard.lab.waits import LabError, wait_until
from listeners.accounts import Mode, accounts_db_name
from listeners.partitions import PARTITIONED_STREAM, partition_of
from listeners.status import Counts
from publisher.events import STREAM_NAME, AccountEvent

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

GROUPS: tuple[Mode, ...] = ("guarded", "partitioned")
# The stream each group consumes: the guarded group the event stream, the partitioned its sourced copy.
STREAM_OF: dict[Mode, str] = {"guarded": STREAM_NAME, "partitioned": PARTITIONED_STREAM}
PHASES = (("plain", "no faults"), ("slowUser", "one slow user"))
SLOW_USER = "slowuser"
# The counters that say what a group did besides applying each event once.
ACTS = ("redelivered", "deferred", "duplicates", "conflicts", "parked")
# How long the listeners' counters may lag behind their databases (they come with the status messages).
COUNTERS_TIMEOUT_S = 15.0


def phase_requests(users: int, count: int, seed: int, slow_every: int = 0) -> list[Request]:
    """`count` random requests over `users` users; with `slow_every`, every slow_every-th (from the first)
    is the slow user's."""
    requests = traffic(users, count, seed)
    if slow_every:
        requests = [(kind, SLOW_USER, cents) if index % slow_every == 0 else (kind, user, cents)
                    for index, (kind, user, cents) in enumerate(requests)]  # fmt: skip
    return requests


async def compare(bench: Bench) -> dict[str, Any]:
    """Both phases on the lab's guarded and partitioned listeners; the figures of each."""
    config = bench.config
    await wait_listeners_ready(bench.lab, timeout=30)
    slow_partition = partition_of(SLOW_USER, config.partitions)
    runs = {}
    numbers: dict[str, int] = {}  # each user's last number, over both phases
    for index, (key, title) in enumerate(PHASES):
        bench.progress(f"    {title}: {config.events:,} events")
        runs[key] = await phase(bench, config.events, seed=300 + index, slow=key == "slowUser", numbers=numbers)
        if runs[key]["serverCpu_s"] is not None:
            bench.progress(f"      nats-server: {runs[key]['serverCpu_s']:.1f} s CPU in the phase")
        for mode in GROUPS:
            figures = runs[key]["groups"][mode]
            bench.progress(
                f"      {mode}: {figures['eventsPerSecond']:,} events/s ({figures['seconds']:.1f} s),"
                f" publish -> applied p50 {figures['publishToApplied']['p50_ms']} ms,"
                f" p99 {figures['publishToApplied']['p99_ms']} ms"
            )
    return {
        "events": config.events,
        "users": config.users,
        "listeners": config.listeners,
        "partitions": config.partitions,
        "slowUser": SLOW_USER,
        "slowMs": config.slow_ms,
        "slowEvery": config.slow_every,
        "slowPartition": slow_partition,
        "runs": runs,
    }


async def phase(bench: Bench, count: int, seed: int, slow: bool, numbers: dict[str, int]) -> dict[str, Any]:
    """Publish `count` events once; wait for both groups to apply them all; each group's figures."""
    lab = bench.lab
    readers = {mode: AccountsReader(bench.data_dir / accounts_db_name(mode)) for mode in GROUPS}
    marks = {mode: await reader.mark() for mode, reader in readers.items()}
    before = {mode: lab.counts.totals(mode=mode) for mode in GROUPS}
    slow_ms = bench.config.slow_ms if slow else 0
    requests = phase_requests(bench.config.users, count, seed, bench.config.slow_every if slow else 0)
    slow_events = sum(1 for _, user, _ in requests if user == SLOW_USER)
    if slow:
        await lab.control("slow-user", SLOW_USER, slow_ms=slow_ms)
    cpu_before = {mode: group_cpu(bench, mode) for mode in GROUPS}
    server_before = server_cpu(bench)
    try:
        started = time.monotonic()
        events = await publish(bench, requests, numbers)
        offered_for = time.monotonic() - started
        # The slow user's events alone take slow_events * slow_ms one after the other; the rest
        # drain at a few thousand a second.
        timeout = 60 + 4 * slow_events * slow_ms / 1000 + len(events) / 200
        await wait_applied(readers, marks, events, timeout)
        await wait_drained(lab, timeout=60, modes=GROUPS)

        def counted() -> bool:
            return all(_settled(lab.counts.totals(mode=mode), before[mode]) >= len(events) for mode in GROUPS)

        await wait_until(counted, COUNTERS_TIMEOUT_S, "the listeners' counters to count every event", interval=0.1)
    finally:
        if slow:
            await lab.control("slow-user", SLOW_USER, slow_ms=0)
    first = min(parse_iso(event.created_at) for event in events)
    groups = {}
    for mode, reader in readers.items():
        rows = await reader.rows_since(marks[mode])
        groups[mode] = group_figures(events, rows, bench.config.partitions, slow)
        groups[mode]["counters"] = _acts(lab.counts.totals(mode=mode), before[mode])
        groups[mode]["perThousand"] = per_thousand(groups[mode]["counters"], len(events))
        cpu = {name: round(seconds - cpu_before[mode].get(name, 0.0), 2) for name, seconds in group_cpu(bench, mode).items()}
        groups[mode]["cpu_s"] = cpu
        groups[mode]["cpuPerThousand_s"] = round(sum(cpu.values()) * 1000 / max(1, len(events)), 3)
        stored = await last_stored(bench, STREAM_OF[mode])
        groups[mode]["lastStored_s"] = None if stored is None else round(stored - first, 3)
    return {
        "events": len(events),
        "slowEvents": slow_events,
        "offeredFor_s": round(offered_for, 3),
        "offeredPerSecond": round(len(events) / offered_for) if offered_for > 0 else None,
        # Storing the publishes in both streams (the sourcing too): shared by the two groups.
        "serverCpu_s": None if server_before is None else round((server_cpu(bench) or 0.0) - server_before, 2),
        "groups": groups,
    }


async def publish(bench: Bench, requests: list[Request], numbers: dict[str, int]) -> list[AccountEvent]:
    """Publish `requests` straight to the event stream, PUBLISH_WINDOW in flight (like the relay), each
    event made (its `createdAt` stamped) as it is sent; `numbers` holds each user's last number."""
    js = bench.jetstream()
    events: list[AccountEvent] = []
    for start in range(0, len(requests), PUBLISH_WINDOW):
        futures = []
        for kind, user, cents in requests[start : start + PUBLISH_WINDOW]:
            numbers[user] = numbers.get(user, 0) + 1
            event = AccountEvent.new(kind, user, cents, numbers[user])
            events.append(event)
            futures.append(
                await js.publish_async(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id}, wait_stall=5.0)
            )
        await asyncio.gather(*futures)
    return events


def group_cpu(bench: Bench, mode: Mode) -> dict[str, float]:
    """CPU seconds (user + system) each running listener of `mode` has used so far, by name."""
    supervisor = bench.lab.supervisor
    assert supervisor is not None
    used = {}
    for entry in supervisor.members(mode):
        if entry.alive and entry.pid is not None:
            try:
                used[entry.name] = proc_cpu_seconds(entry.pid)
            except (OSError, ValueError, IndexError):  # ended meanwhile
                pass
    return used


def server_cpu(bench: Bench) -> float | None:
    server = bench.lab.server
    pid = getattr(server, "pid", None)
    if pid is None:
        return None
    try:
        return proc_cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


async def last_stored(bench: Bench, stream: str) -> float | None:
    """When the last message of `stream` was stored (the server's clock, this machine's), epoch seconds."""
    assert bench.lab.nc is not None
    js = bench.lab.nc.jetstream()
    info = await js.stream_info(stream)
    if not info.state.last_seq:
        return None
    stamp = (await js.get_msg(stream, info.state.last_seq)).time
    return None if stamp is None else stamp.timestamp()


async def wait_applied(
    readers: dict[Mode, AccountsReader], marks: dict[Mode, int], events: list[AccountEvent], timeout: float
) -> None:
    """Until both databases hold every one of `events`; LabError at the deadline, saying how far each
    group got and where the slow user is in it."""
    started = time.monotonic()
    counts = dict.fromkeys(readers, 0)

    async def done() -> bool:
        for mode, reader in readers.items():
            if counts[mode] < len(events):
                counts[mode] = await reader.count_since(marks[mode])
        return all(count >= len(events) for count in counts.values())

    try:
        await wait_until(done, timeout, "both groups to apply every event", interval=0.05)
    except TimeoutError:
        slow_last = max((event.number for event in events if event.user_id == SLOW_USER), default=0)
        behind = []
        for mode, reader in readers.items():
            if counts[mode] >= len(events):
                continue
            rows = [row for row in await reader.rows_since(marks[mode]) if row.user_id == SLOW_USER]
            reached = max((row.number for row in rows), default=0)
            behind.append(
                f"the {mode} group applied {counts[mode]:,} of {len(events):,} events"
                + (f" ({SLOW_USER} at #{reached} of #{slow_last})" if slow_last else "")
            )
        raise LabError(f"after {time.monotonic() - started:.0f} s, {'; '.join(behind)}") from None


def group_figures(events: list[AccountEvent], rows: list[AppliedRow], partitions: int, slow: bool) -> dict[str, Any]:
    """One group's throughput, latencies and split of the work, from its database's rows of `events`."""
    created = {event.id: parse_iso(event.created_at) for event in events}
    rows = [row for row in rows if row.event_id in created]
    first = min(created.values())
    last = max(row.applied_at for row in rows)
    slow_partition = partition_of(SLOW_USER, partitions)
    classes: dict[str, list[float]] = {"slowUser": [], "partitionMates": [], "otherUsers": []}
    per_listener: dict[str, int] = {}
    batches: dict[str, set[float]] = {}  # a batch's rows share its applied_at: one commit each
    per_partition_last: dict[int, float] = {}
    mates: set[str] = set()
    others_last = first
    latencies = []
    for row in rows:
        latency = row.applied_at - created[row.event_id]
        latencies.append(latency)
        per_listener[row.listener] = per_listener.get(row.listener, 0) + 1
        batches.setdefault(row.listener, set()).add(row.applied_at)
        partition = partition_of(row.user_id, partitions)
        per_partition_last[partition] = max(per_partition_last.get(partition, first), row.applied_at)
        if row.user_id == SLOW_USER:
            classes["slowUser"].append(latency)
            continue
        others_last = max(others_last, row.applied_at)
        if partition == slow_partition:
            mates.add(row.user_id)
            classes["partitionMates"].append(latency)
        else:
            classes["otherUsers"].append(latency)
    figures: dict[str, Any] = {
        "applied": len(rows),
        "seconds": round(last - first, 3),
        "eventsPerSecond": round(len(rows) / (last - first)) if last > first else None,
        "publishToApplied": spread(latencies),
        "perListener": dict(sorted(per_listener.items())),
        "batchesPerListener": {name: len(stamps) for name, stamps in sorted(batches.items())},
        # From the phase's first createdAt to the last event of each partition applied in this group.
        "partitionDone_s": {str(p): round(t - first, 3) for p, t in sorted(per_partition_last.items())},
    }
    if slow:
        not_slow = len(rows) - len(classes["slowUser"])
        figures["othersSeconds"] = round(others_last - first, 3)
        figures["othersPerSecond"] = round(not_slow / (others_last - first)) if others_last > first else None
        figures["partitionMateUsers"] = len(mates)
        figures.update({name: spread(values) for name, values in classes.items()})
    return figures


def _settled(now: Counts, before: Counts) -> int:
    return now.applied + now.rejected - before.applied - before.rejected


def _acts(now: Counts, before: Counts) -> dict[str, int]:
    return {name: getattr(now, name) - getattr(before, name) for name in ACTS}


def per_thousand(acts: dict[str, int], events: int) -> dict[str, float]:
    """Redeliveries, and the guard's acts (deferred + duplicates), per 1,000 events published."""
    scale = 1000 / max(1, events)
    return {
        "redelivered": round(acts["redelivered"] * scale, 1),
        "guardActs": round((acts["deferred"] + acts["duplicates"]) * scale, 1),
    }


# -- the table -------------------------------------------------------------------------------------


def _ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _latency(figures: dict[str, Any]) -> str:
    if not figures or not figures.get("n"):
        return "-"
    return f"p50 {_ms(figures['p50_ms'])}, p99 {_ms(figures['p99_ms'])}, max {_ms(figures['max_ms'])} ({figures['n']:,})"


def _rate(per_second: int | None, seconds: float) -> str:
    return "-" if per_second is None else f"{per_second:,} events/s ({seconds:.1f} s)"


def _acts_text(group: dict[str, Any]) -> str:
    acts, per = group["counters"], group["perThousand"]
    text = f"{per['redelivered']:g} redelivered; guard {per['guardActs']:g} ({acts['deferred']:,} deferred, {acts['duplicates']:,} duplicates)"
    extra = [f"{acts[name]:,} {name}" for name in ("conflicts", "parked") if acts[name]]
    return text + (f"; {', '.join(extra)}" if extra else "")


def _stored(group: dict[str, Any]) -> str:
    return "-" if group.get("lastStored_s") is None else f"{group['lastStored_s']:.1f} s"


def _cpu_text(group: dict[str, Any]) -> str:
    per_listener = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in group["cpu_s"].items())
    return f"{group['cpuPerThousand_s']:.2f} s ({per_listener})"


def _split(group: dict[str, Any]) -> str:
    batches = group.get("batchesPerListener", {})
    return ", ".join(
        f"{name} {count:,}" + (f" in {batches[name]:,} batches" if name in batches else "")
        for name, count in group["perListener"].items()
    )


def _partitions(group: dict[str, Any], slow_partition: int | None) -> str:
    return ", ".join(
        f"p{p}{'*' if slow_partition is not None and int(p) == slow_partition else ''} {seconds:.1f} s"
        for p, seconds in group["partitionDone_s"].items()
    )


def partitioned_rows(phase: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Measure, guarded, partitioned: one block of rows per phase."""
    rows: list[tuple[str, str, str]] = []
    for key, title in PHASES:
        run = phase.get("runs", {}).get(key)
        if run is None:
            continue
        g, p = run["groups"]["guarded"], run["groups"]["partitioned"]
        slow = key == "slowUser"
        marked = phase["slowPartition"] if slow else None

        def row(name: str, cell: Any, g: dict[str, Any] = g, p: dict[str, Any] = p) -> tuple[str, str, str]:
            return (name, cell(g), cell(p))

        rows.append(row(f"{title}: throughput, first publish -> all {run['events']:,} applied",
                        lambda f: _rate(f["eventsPerSecond"], f["seconds"])))  # fmt: skip
        if slow:
            rows.append(row(f"{title}: throughput of the others, the {run['slowEvents']:,} slow events left out",
                            lambda f: _rate(f["othersPerSecond"], f["othersSeconds"])))  # fmt: skip
        rows.append(row(f"{title}: publish -> applied, every event", lambda f: _latency(f["publishToApplied"])))
        if slow:
            mates = p.get("partitionMateUsers", 0)
            rows += [
                row("  the slow user's events", lambda f: _latency(f["slowUser"])),
                row(f"  its partition-mates' (p{phase['slowPartition']}, {mates:,} users)",
                    lambda f: _latency(f["partitionMates"])),  # fmt: skip
                row("  the other users'", lambda f: _latency(f["otherUsers"])),
            ]
        rows += [
            row(f"{title}: last event stored in the group's stream, from the first publish", _stored),
            row(f"{title}: each partition's last event applied, from the first publish", lambda f: _partitions(f, marked)),
            row(f"{title}: events applied per listener, in batches (commits)", _split),
            row(f"{title}: listeners' CPU per 1,000 events", _cpu_text),
            row(f"{title}: per 1,000 events", _acts_text),
        ]
    return rows
