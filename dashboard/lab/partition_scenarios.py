"""The partitioned group's scenarios: a slow user that holds up its partition, an owner that dies, and
both ordering designs under the same faults.

Like the others (see `failures`), each caption is one step and the action it announces runs after
`say` returns; what depends on timing (a kill and the events that follow it) happens within one step.
Captions that report come after their step and give what was measured: times come from the
databases (`partition_probes`), so they do not depend on how long a caption was read. Each scenario
returns one sentence with this run's figures, which the lesson ends with.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable

from dashboard.lab.failures import Say
from dashboard.lab.lab import Lab
from dashboard.lab.partition_probes import (
    Spread,
    applied_rows,
    at_least,
    done_after,
    held_count,
    in_partition,
    latencies,
    owner_of,
    owners,
    pick_users,
    unix_time,
)
from dashboard.lab.probes import (
    HOLD_MS,
    account_is,
    alive,
    prepare_listeners,
    taken_users,
    wait_drained,
    wait_listeners_ready,
)
from dashboard.lab.traffic import random_requests
from dashboard.lab.waits import LabError, wait_until
from listeners.accounts import Mode
from listeners.partitions import PRIORITY_TIMEOUT_S, partition_of, partition_state
from listeners.status import COUNTERS, Counts, DeliveryReport
from publisher.events import AccountEvent, format_cents

NAMES = ("amy", "bob", "cat", "dan", "eve", "fay", "gus", "ida", "jon", "kay", "liz", "max", "ned", "oli", "pam")
SLOW_USER_MS = 300
EVENTS_EACH = 10
MATES = 3


def listing(names: Iterable[str]) -> str:
    """`Amy`, `Amy and Bob`, `Amy, Bob and Cat`; `nobody` for none."""
    shown = [name.capitalize() for name in names]
    if len(shown) < 2:
        return shown[0] if shown else "nobody"
    return ", ".join(shown[:-1]) + f" and {shown[-1]}"


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def seconds(value: float) -> str:
    """`3.1 s`, and `0.04 s` for what would round to nothing."""
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s"


def parts(partitions: Iterable[int]) -> str:
    return " and ".join(f"p{p}" for p in sorted(partitions))


def counts(lab: Lab, mode: Mode) -> Counts:
    return lab.counts.totals(mode=mode)


def since(before: Counts, after: Counts) -> Counts:
    return Counts(**{name: getattr(after, name) - getattr(before, name) for name in COUNTERS})


async def publish_all(lab: Lab, requests: Iterable[tuple[str, str, int]]) -> list[AccountEvent]:
    """Record the requests together (one group commit), in order; the relay sends them at once."""
    assert lab.publisher is not None
    publisher = lab.publisher
    return list(await asyncio.gather(*(publisher.record(kind, user, cents) for kind, user, cents in requests)))


def drain_timeout(lab: Lab) -> float:
    return lab.settings.ack_wait_s * 4 + 30


# -- hot-partition ---------------------------------------------------------------------------------


async def hot_partition(lab: Lab, say: Say, rng: random.Random) -> str:
    await prepare_listeners(lab)
    await at_least(lab, "guarded", 2)
    await at_least(lab, "partitioned", 2)
    n = lab.settings.partitions
    if n < 2:
        raise LabError("hot-partition needs at least 2 partitions: start the lab with --partitions 2 or more")
    taken = await taken_users(lab)
    hot = pick_users(["hot"], 1, lambda user: True, taken)[0]
    p = partition_of(hot, n)
    mates = pick_users(NAMES, MATES, in_partition(p, n), taken)
    others = pick_users(NAMES, MATES, lambda user: partition_of(user, n) != p, taken)
    Hot = hot.capitalize()
    await say(
        f"{Hot} becomes a slow user: each of {Hot}'s events takes {SLOW_USER_MS} ms to process (a slow downstream"
        f" call), in every listener of every group. In the partitioned group {Hot} hashes to partition p{p},"
        f" with {listing(mates)}; {listing(others)} hash to other partitions."
    )
    await lab.control("slow-user", hot, slow_ms=SLOW_USER_MS)
    users = [hot, *mates, *others]
    await say(
        f"{EVENTS_EACH} deposits each for {listing(users)}, published together, one"
        f" user after the other, {EVENTS_EACH} times over: {EVENTS_EACH * len(users)} events, the same for every group."
    )
    before = {mode: counts(lab, mode) for mode in ("guarded", "partitioned")}
    events = await publish_all(
        lab, [("deposit", user, rng.randint(1, 20) * 500) for _ in range(EVENTS_EACH) for user in users]
    )
    started = min(unix_time(event.created_at) for event in events)
    await wait_drained(lab, timeout=drain_timeout(lab) + EVENTS_EACH * SLOW_USER_MS / 1000)
    rows = {mode: await applied_rows(lab, mode, users) for mode in ("guarded", "partitioned")}
    took = {
        mode: {
            name: done_after(rows[mode], group, started)
            for name, group in (("hot", [hot]), ("mates", mates), ("others", others))
        }
        for mode in rows
    }
    deferred = {mode: since(before[mode], counts(lab, mode)).deferred for mode in rows}
    owner = list(dict.fromkeys(row.listener for row in rows["partitioned"] if row.user_id == hot))  # in turn
    part, guard = took["partitioned"], took["guarded"]
    await say(
        f"Partitioned: {' then '.join(owner) or 'its owner'} took p{p}'s events in order, one after the other, so each"
        f" event of {listing(mates)} waited for the {Hot} event before it: they were done {seconds(part['mates'])}"
        f" after publishing, with {Hot} ({seconds(part['hot'])}). {listing(others)}, in other partitions, were done in"
        f" {seconds(part['others'])}. {_guard_acts(deferred['partitioned'])}"
    )
    overtook = (
        f"the guard deferred {Hot}'s events {plural(deferred['guarded'], 'time', 'times')}, when one had overtaken"
        " an earlier one"
        if deferred["guarded"]
        else f"none of {Hot}'s events overtook another"
    )
    await say(
        f"Guarded: any listener takes any event. {Hot}'s went to a slow lane, one at a time, and the rest went on:"
        f" {listing(mates)} were done in {seconds(guard['mates'])}, {listing(others)} in {seconds(guard['others'])},"
        f" {Hot} in {seconds(guard['hot'])} ({overtook})."
    )
    await say(f"{Hot}'s events are processed at normal speed again.")
    await lab.control("slow-user", hot, slow_ms=0)
    return (
        f"Here {Hot}'s partition-mates waited {seconds(part['mates'])} in the partitioned group, and the same users"
        f" {seconds(guard['mates'])} in the guarded group; users of other partitions {seconds(part['others'])}."
    )


def _guard_acts(deferred: int) -> str:
    if not deferred:
        return "The number guard had nothing to defer: the partition kept the order."
    return f"The number guard still deferred events {plural(deferred, 'time', 'times')}."


# -- owner-dies ------------------------------------------------------------------------------------


async def owner_dies(lab: Lab, say: Say, rng: random.Random) -> str:
    assert lab.publisher is not None and lab.supervisor is not None and lab.nc is not None
    nc, supervisor = lab.nc, lab.supervisor
    await prepare_listeners(lab)
    names = await at_least(lab, "partitioned", 2)
    n, ack_wait = lab.settings.partitions, lab.settings.ack_wait_s
    liv = pick_users(["liv"], 1, lambda user: True, await taken_users(lab))[0]
    Liv, p = liv.capitalize(), partition_of(liv, n)
    await lab.publisher.record("deposit", liv, 1000)
    await wait_until(lambda: account_is(lab, "partitioned", liv, 1), 20, f"{Liv} #1 in the partitioned database")
    await wait_until(lambda: owner_of(lab, p), 10, f"an owner of p{p}")
    owner = await owner_of(lab, p)
    assert owner is not None
    homes = "; ".join(f"{name}: {parts(supervisor.home(name))}" for name in names if supervisor.home(name))
    await say(
        f"In the partitioned group each partition is pinned to one listener, its owner; each listener pulls its home"
        f" partitions first ({homes}) and stands by for the others. {Liv} hashes to p{p}: {Liv}'s deposit of $10"
        f" (#1) went to {owner}, p{p}'s owner."
    )
    await say(f"{owner} slows down, so it holds what it takes; {Liv}'s next 5 deposits (#2 to #6) are published.")
    await lab.control("slow", owner, slow_ms=HOLD_MS)
    for _ in range(5):
        await lab.publisher.record("deposit", liv, 1000)

    async def holds_all() -> bool:
        return held_count(lab, owner) > 0 and (await partition_state(nc, p)).ack_pending >= 5

    await wait_until(holds_all, 20, f"{owner} to take {Liv} #2 to #6")
    old_pin = (await partition_state(nc, p)).pinned_id
    # One step: the kill and the events after it must come before p's takeover, however long a caption is read.
    await say(
        f"{owner} is killed (SIGKILL) holding {Liv} #2 to #6, none of them acknowledged;"
        f" {Liv} deposits twice more (#7 and #8) right after."
    )
    deferred_before = counts(lab, "partitioned").deferred
    killed_at = time.time()
    await lab.control("kill", owner)
    for _ in range(2):
        await lab.publisher.record("deposit", liv, 1000)
    seen: dict[str, float] = {}  # when the server first let the dead owner go, and first pinned another

    async def taken() -> bool:
        pin = (await partition_state(nc, p)).pinned_id
        if pin is None:
            seen.setdefault("unpinned", time.time())
        elif pin != old_pin:
            seen["taken"] = time.time()
        return "taken" in seen

    await wait_until(taken, 30, f"a standby to take p{p}")
    taken_at = seen["taken"]
    unpinned_at = seen.get("unpinned", taken_at)  # unseen when a standby got the pin between two looks
    await wait_until(lambda: owner_of(lab, p), 10, f"the listener that took p{p} to say so")
    standby = await owner_of(lab, p)
    assert standby is not None
    await wait_until(
        lambda: account_is(lab, "partitioned", liv, 8), drain_timeout(lab), f"{Liv} #8 in the partitioned database"
    )
    unpinned_after = unpinned_at - killed_at
    await say(
        f"The server kept p{p} pinned to the dead {owner} for {unpinned_after:.1f} s after the kill: it lets an owner"
        f" go {PRIORITY_TIMEOUT_S:g} s after its last pull, and {owner} had last pulled a moment before it died. Then p{p} had no owner until {standby}, standing by, saw it"
        f" waiting with events and took it, {taken_at - killed_at:.1f} s after the kill."
    )
    rows = [row for row in await applied_rows(lab, "partitioned", [liv]) if row.number > 1]
    held = [row for row in rows if row.number <= 6]
    back_after = max(row.at for row in held) - killed_at
    numbers = [row.number for row in rows]
    deferred = counts(lab, "partitioned").deferred - deferred_before
    later = (
        f"#7 and #8 reached {standby} first, so the number guard deferred them ({deferred} times) until #2 was back"
        if deferred
        else "#7 and #8 came after them"
    )
    balance = next((row.balance_cents for row in await lab.accounts("partitioned") if row.user_id == liv), 0)
    applied_twice = len(numbers) - len(set(numbers))
    missing = sorted(set(range(2, 9)) - set(numbers))
    fate = (
        "nothing lost, nothing applied twice"
        if not missing and not applied_twice
        else f"missing {', '.join(f'#{m}' for m in missing) or 'none'}, applied twice {applied_twice}"
    )
    redelivered = ", each on its second delivery or later" if all(row.delivery_count > 1 for row in held) else ""
    order = "in order" if numbers == sorted(numbers) else f"in this order: {' '.join(f'#{m}' for m in numbers)}"
    await say(
        f"{Liv} #2 to #6 came back to {standby} once their ack wait ran out ({ack_wait:g} s after {owner} last said"
        f" it was working on them), and were applied"
        f" {back_after:.1f} s after the kill, {order}{redelivered}; {later}."
        f" {Liv} is at #{max(numbers)}, {format_cents(balance)}: {fate}."
    )
    if p not in supervisor.home(owner):
        await say(f"{owner} is restarted; p{p} is not one of its home partitions, so {standby} keeps it.")
        await lab.control("restart", owner)
        await wait_listeners_ready(lab)
        return (
            f"Here p{p} had no owner from {unpinned_after:.1f} s to {taken_at - killed_at:.1f} s after the kill,"
            f" and the held events were applied, {order}, {back_after:.1f} s after it."
        )
    await say(f"{owner} is restarted and asks for its home partition p{p} again, while {standby} still owns it.")
    await lab.control("restart", owner)
    restarted = time.time()
    await wait_listeners_ready(lab)
    await wait_until(
        lambda: p not in lab.statuses[standby].partitions, 30, f"{standby} to hand p{p} back to {owner}", interval=0.1
    )
    handed_after = time.time() - restarted
    await lab.publisher.record("deposit", liv, 1000)
    await wait_until(lambda: account_is(lab, "partitioned", liv, 9), 20, f"{Liv} #9 in the partitioned database")
    await wait_until(lambda: owner_of(lab, p), 10, f"p{p}'s owner to say so")
    again = await owner_of(lab, p)
    await say(
        f"{standby} saw {owner}'s pull waiting for p{p}, finished and acknowledged what it held, and let p{p} go"
        f" {handed_after:.1f} s after the restart; {Liv}'s next deposit (#9) went to {again}, p{p}'s owner again."
    )
    return (
        f"Here p{p} had no owner from {unpinned_after:.1f} s to {taken_at - killed_at:.1f} s after the kill, the"
        f" held events were applied, {order}, {back_after:.1f} s after it, and {owner} had p{p} back"
        f" {handed_after:.1f} s after its restart."
    )


# -- partitioned-vs-guarded ------------------------------------------------------------------------

USERS = 6
BURST = 24  # events before a kill, and again after it
CRASH_BURST = 12
COMPARED: tuple[Mode, ...] = ("guarded", "partitioned")


def ownership(found: dict[int, str | None], users_of: dict[int, list[str]]) -> str:
    """`P1 owns p0 (Amy, Dan) and p2 (Cat, Fay); P2 owns p1 (Bob, Eve)`."""
    by_owner: dict[str, list[int]] = {}
    for partition, owner in sorted(found.items()):
        if users_of.get(partition):
            by_owner.setdefault(owner or "nobody", []).append(partition)
    return "; ".join(
        f"{owner} owns " + " and ".join(f"p{p} ({listing(users_of[p])})" for p in partitions)
        for owner, partitions in by_owner.items()
    )


def crashed(lab: Lab, mode: Mode) -> list[str]:
    assert lab.supervisor is not None
    return [entry.name for entry in lab.supervisor.members(mode) if entry.state == "crashed"]


async def hold_and_kill(
    lab: Lab, rng: random.Random, users: list[str], victims: list[str]
) -> tuple[list[AccountEvent], list[DeliveryReport], int]:
    """Slow the victims, publish a stream until each holds something, kill them and publish as much
    again at once. The events, what the guarded victim held, and how many events the partitioned one held."""
    assert lab.nc is not None
    guarded_victim, partitioned_victim = victims
    for name in victims:
        await lab.control("slow", name, slow_ms=HOLD_MS)
    events: list[AccountEvent] = []
    # One at a time, so the slowed guarded listener gets its turn at the stream (its partner takes batches).
    for request in random_requests(rng, users, BURST):
        events += await publish_all(lab, [request])
        await asyncio.sleep(0.02)
    await wait_until(
        lambda: all(held_count(lab, name) for name in victims), 20, f"{' and '.join(victims)} to hold events"
    )
    held = list(lab.statuses[guarded_victim].in_flight)
    owned = lab.statuses[partitioned_victim].partitions
    partition_held = sum([(await partition_state(lab.nc, p)).ack_pending for p in owned])
    for name in victims:
        await lab.control("kill", name)
    events += await publish_all(lab, random_requests(rng, users, BURST))
    return events, held, partition_held


async def crash_all(lab: Lab, rng: random.Random, users: list[str]) -> tuple[list[AccountEvent], list[str]]:
    """Arm every guarded and partitioned listener to crash after its next commit, publish, and restart
    those that crashed once each group has lost one; the events and the listeners that crashed."""
    armed = alive(lab, "guarded") + alive(lab, "partitioned")
    for name in armed:
        await lab.control("crash", name)
    events = await publish_all(lab, random_requests(rng, users, CRASH_BURST))
    await wait_until(
        lambda: crashed(lab, "guarded") and crashed(lab, "partitioned"), 20, "a listener of each group to crash"
    )
    for name in alive(lab, "guarded") + alive(lab, "partitioned"):
        if name in armed:
            try:
                await lab.control("normal", name)
            except LabError:  # it crashed meanwhile, and is restarted below with the others
                pass
    victims = crashed(lab, "guarded") + crashed(lab, "partitioned")
    for name in victims:
        await lab.control("restart", name)
    return events, victims


async def partitioned_vs_guarded(lab: Lab, say: Say, rng: random.Random) -> str:
    await prepare_listeners(lab)
    guarded = await at_least(lab, "guarded", 2)
    partitioned = await at_least(lab, "partitioned", 2)
    n, ack_wait = lab.settings.partitions, lab.settings.ack_wait_s
    taken = await taken_users(lab)
    users = [pick_users(NAMES, 1, in_partition(i % n, n), taken)[0] for i in range(USERS)]
    users_of = {p: [user for user in users if partition_of(user, n) == p] for p in range(n)}
    await say(
        "Two designs keep each user's events in order; both groups get the same events and the same faults."
        f" Guarded {listing(guarded)} share one consumer: any listener takes any event, and the number guard applies"
        f" only each user's next number. Partitioned {listing(partitioned)}: each user hashes to one of {n}"
        " partitions, each partition is pinned to one listener, which takes its events in order; the guard stays"
        f" as a safety net. First {listing(users)} deposit $100 each."
    )
    await publish_all(lab, [("deposit", user, 10000) for user in users])
    await wait_drained(lab, timeout=drain_timeout(lab))
    used = [p for p, members in users_of.items() if members]
    await wait_until(lambda: _all_owned(lab, used), 10, "every partition with users to have an owner")
    found = await owners(lab)
    load: dict[str, int] = {}
    for p in used:
        owner = found[p]
        if owner is not None:
            load[owner] = load.get(owner, 0) + len(users_of[p])
    victims = [guarded[0], max(load, key=lambda name: load[name])]
    await say(
        f"{ownership(found, users_of)}. Fault 1: guarded {victims[0]} and partitioned {victims[1]} slow down, so each"
        f" holds what it takes; {BURST} events are published, then both are killed (SIGKILL) holding theirs, and"
        f" {BURST} more follow at once."
    )
    before = {mode: counts(lab, mode) for mode in COMPARED}
    events, held, partition_held = await hold_and_kill(lab, rng, users, victims)
    await wait_drained(lab, timeout=drain_timeout(lab))
    orphaned = [p for p in used if found[p] == victims[1]]
    takers = sorted({name for p in orphaned if (name := await owner_of(lab, p)) is not None})
    first = {mode: since(before[mode], counts(lab, mode)) for mode in COMPARED}
    rows = {mode: await applied_rows(lab, mode, users) for mode in COMPARED}
    lat = {mode: Spread.of(latencies(events, rows[mode])) for mode in COMPARED}
    for name in victims:
        await lab.control("restart", name)
    await wait_listeners_ready(lab)
    rest = listing(name for name in guarded if name != victims[0])
    stalled = listing(sorted({delivery.user_id or "?" for delivery in held}))
    waited = (
        f"the guard deferred {stalled}'s later events ({plural(first['guarded'].deferred, 'deferral', 'deferrals')})"
        f" until what {victims[0]} held came back"
        if first["guarded"].deferred
        else f"what {victims[0]} held came back"
    )
    late = (
        f" The events published after the kill reached {listing(takers) or 'the standby'} first, so the number guard"
        f" deferred them ({plural(first['partitioned'].deferred, 'deferral', 'deferrals')}) until the older ones"
        " were back."
        if first["partitioned"].deferred
        else " The number guard had nothing to defer."
    )
    await say(
        f"Guarded: {victims[0]} died holding {listing(d.describe() for d in held)}; {rest} went on with every other"
        f" event, and {waited} after the ack wait ({ack_wait:g} s)."
    )
    await say(
        f"Partitioned: {victims[1]} died holding {partition_held} events of {parts(orphaned)}, and all their users"
        f" waited until {listing(takers) or 'a standby'} took those partitions over and the held events came back"
        f" after the ack wait.{late} From publish to applied, guarded: {lat['guarded']}; partitioned:"
        f" {lat['partitioned']}. {listing(victims)} are restarted."
    )
    await say(
        "Fault 2: every guarded and partitioned listener is told to crash right after its next commit, before it"
        f" acknowledges; then {CRASH_BURST} more events are published."
    )
    duplicates = {mode: counts(lab, mode).duplicates for mode in COMPARED}
    more, crashers = await crash_all(lab, rng, users)
    events += more
    await wait_drained(lab, timeout=drain_timeout(lab))
    try:  # the statuses that count the skipped copies may be a moment behind the acknowledgements
        await wait_until(lambda: all(counts(lab, m).duplicates > duplicates[m] for m in COMPARED), 3, "duplicates")
    except TimeoutError:
        pass
    skipped = {mode: counts(lab, mode).duplicates - duplicates[mode] for mode in COMPARED}
    await say(
        f"{listing(crashers)} committed and died before acknowledging, and were restarted. What they had committed came"
        f" back after the ack wait, and the number guard skipped it as already applied: {skipped['guarded']} copies in"
        f" the guarded group, {skipped['partitioned']} in the partitioned one. Partitions"
        " give order, not exactly-once: without the number check those events would have been applied twice."
    )
    await wait_drained(lab, timeout=drain_timeout(lab))
    report = await lab.check()
    right = {
        "guarded": report.guarded.clean and report.guarded.pending == 0,
        "partitioned": report.partitioned is not None and report.partitioned.clean and report.partitioned.pending == 0,
    }
    total = {mode: since(before[mode], counts(lab, mode)) for mode in COMPARED}
    rows = {mode: await applied_rows(lab, mode, users) for mode in COMPARED}
    lat = {mode: Spread.of(latencies(events, rows[mode])) for mode in COMPARED}

    def summary(mode: Mode) -> str:
        return (
            f"{plural(total[mode].redelivered, 'redelivery', 'redeliveries')},"
            f" {plural(total[mode].deferred, 'deferral', 'deferrals')},"
            f" {plural(total[mode].duplicates, 'duplicate', 'duplicates')} skipped, publish to applied {lat[mode]}"
        )

    verdict = {mode: "right" if right[mode] else "WRONG" for mode in COMPARED}
    await say(
        f"Both databases against what was published ({len(events) + len(users)} events of {len(users)} users),"
        f" judged as `natslab check` does: guarded {verdict['guarded']}, partitioned {verdict['partitioned']}."
    )
    both = "both databases ended right" if all(right.values()) else "a database ended WRONG"
    return (
        f"In this run the guarded group had {summary('guarded')}; the partitioned group {summary('partitioned')};"
        f" {both}."
    )


async def _all_owned(lab: Lab, partitions: list[int]) -> bool:
    found = await owners(lab)
    return all(found.get(p) for p in partitions)
