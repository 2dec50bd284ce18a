"""Scenarios: scripted failures on a running lab, narrated one caption per step.

A scenario is an async function of a `Lab` and a `say` callback. The CLI runs it on a fresh embedded
server in a temporary data dir and prints the captions; the dashboard runs the same function on its own
lab and shows the captions on screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dashboard.lab.checker import CheckReport
from dashboard.lab.lab import Lab
from dashboard.lab.probes import (
    HOLD_MS,
    account_is,
    alive,
    fresh_user,
    holder_of,
    prepare_listeners,
    wait_drained,
    wait_listeners_ready,
)
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import record_random
from dashboard.lab.waits import wait_until
from listeners.accounts import AccountRow, Mode
from listeners.groups import GUARDED_GROUP, NAIVE_GROUP
from publisher.events import AccountEvent, format_cents

Say = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Lab, Say, random.Random], Awaitable[None]]
    listeners: int = 2
    naive: int = 1


def _deferred(lab: Lab) -> int:
    return lab.counts.total("deferred", mode="guarded")


async def slides(lab: Lab, say: Say, rng: random.Random | None = None) -> None:
    """The seed's example: Jim's withdrawal overtakes his second deposit."""
    assert lab.publisher is not None and lab.supervisor is not None
    ack_wait = lab.settings.ack_wait_s
    await prepare_listeners(lab)
    jim, mary = await fresh_user(lab, "jim"), await fresh_user(lab, "mary")
    Jim, Mary = jim.capitalize(), mary.capitalize()
    guarded, naive = ", ".join(alive(lab, "guarded")), ", ".join(alive(lab, "naive"))
    await say(f"Guarded listeners {guarded} share the queue group {GUARDED_GROUP.name}; naive {naive} reads {NAIVE_GROUP.name}.")

    await say(f"Publisher: {Mary} deposits $40 ({Mary} #1), {Jim} deposits $70 ({Jim} #1).")
    await lab.publisher.record("deposit", mary, 4000)
    await lab.publisher.record("deposit", jim, 7000)
    for mode in ("guarded", "naive"):
        await wait_until(lambda m=mode: account_is(lab, m, jim, 1), 20, f"{Jim} #1 in the {mode} database")
        await wait_until(lambda m=mode: account_is(lab, m, mary, 1), 20, f"{Mary} #1 in the {mode} database")

    await say(f"Every listener slows down, so whoever takes {Jim}'s next deposit sits on it.")
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("slow", name, slow_ms=HOLD_MS)
    await lab.publisher.record("deposit", jim, 4000)
    await wait_until(lambda: holder_of(lab, "guarded", jim, 2) is not None, 20, f"a guarded listener to take {Jim} #2")
    await wait_until(lambda: holder_of(lab, "naive", jim, 2) is not None, 20, f"the naive listener to take {Jim} #2")
    slow_guarded = holder_of(lab, "guarded", jim, 2)
    slow_naive = holder_of(lab, "naive", jim, 2)
    assert slow_guarded is not None and slow_naive is not None

    await say(f"Listener {slow_guarded} holds {Jim}'s +$40 (#2) and dies before acknowledging it (SIGKILL); so does {slow_naive}.")
    # From the kill on, #2 comes back after one ack wait; #3 must reach the survivors before that.
    await lab.control("kill", slow_guarded)
    await lab.control("kill", slow_naive)
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("normal", name)
    deferred_before = _deferred(lab)
    await say(f"{Jim} withdraws $100 ({Jim} #3). It reaches the survivors before the deposit it depends on.")
    await lab.publisher.record("withdraw", jim, 10000)
    await lab.control("restart", slow_naive)
    await wait_until(lambda: _deferred(lab) > deferred_before, 20, f"a guarded listener to defer {Jim} #3")
    await wait_until(lambda: account_is(lab, "naive", jim, 3), 20, f"the naive listener to process {Jim} #3")
    await say("Guarded: #3 is early (last processed is 1), so it is not acknowledged and comes back later.")
    await say(f"Naive: #3 is applied as it arrives; $100 is more than {Jim}'s $70, so the withdrawal is rejected.")

    await say(f"After the ack wait ({ack_wait:g} s) NATS redelivers #2; the guard applies #2, then #3.")
    await wait_drained(lab, timeout=ack_wait * 4 + 30)
    await lab.control("restart", slow_guarded)
    await wait_listeners_ready(lab)
    ends = {mode: dict((r.user_id, r.balance_cents) for r in await lab.accounts(mode)).get(jim, 0) for mode in ("guarded", "naive")}  # type: ignore[arg-type]
    await say(
        f"Drained: every event is processed. Guarded {Jim} ends at {format_cents(ends['guarded'])};"
        f" naive {Jim} ends at {format_cents(ends['naive'])}."
    )


# -- the failure library ---------------------------------------------------------------------------


async def hold_one(lab: Lab, mode: Mode, kind: str, user: str, amount_cents: int) -> str:
    """Slow every live listener of `mode`, then record the transaction; the one that takes it holds it.

    Slowed first: a listener at normal speed would apply the event before it could be held.
    """
    assert lab.publisher is not None
    for name in alive(lab, mode):
        await lab.control("slow", name, slow_ms=HOLD_MS)
    event = await lab.publisher.record(kind, user, amount_cents)
    await wait_until(
        lambda: holder_of(lab, mode, user, event.number) is not None, 20, f"a {mode} listener to take {event.describe()}"
    )
    holder = holder_of(lab, mode, user, event.number)
    assert holder is not None
    return holder


async def release(lab: Lab, names: list[str]) -> None:
    for name in names:
        await lab.control("normal", name)


async def kill_in_flight(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    kim = await fresh_user(lab, "kim")
    Kim = kim.capitalize()
    await say(f"{Kim} deposits $10 (#1); every guarded listener slows down so the one that takes it holds it.")
    holder = await hold_one(lab, "guarded", "deposit", kim, 1000)
    await say(f"Listener {holder} holds {Kim} #1 unacknowledged. SIGKILL.")
    await lab.control("kill", holder)
    await release(lab, alive(lab, "guarded"))
    await say(f"{Kim}'s next events arrive meanwhile; they are early until #1 comes back after the ack wait ({lab.settings.ack_wait_s:g} s).")
    redelivered_before = lab.counts.total("redelivered", mode="guarded")
    await record_random(lab.publisher, rng, [kim], 5)
    await wait_drained(lab, timeout=lab.settings.ack_wait_s * 4 + 30, modes=("guarded",))
    redeliveries = lab.counts.total("redelivered", mode="guarded") - redelivered_before
    await say(f"The survivors applied {Kim} #1 after its redelivery ({redeliveries} redeliveries, early events included).")
    await lab.control("restart", holder)


async def zombie(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    zoe = await fresh_user(lab, "zoe")
    Zoe = zoe.capitalize()
    await say(f"{Zoe} deposits $25 (#1); the guarded listener that takes it holds it.")
    holder = await hold_one(lab, "guarded", "deposit", zoe, 2500)
    others = [name for name in alive(lab, "guarded") if name != holder]
    await release(lab, others)
    await say(f"Listener {holder} is paused (SIGSTOP) holding {Zoe} #1, longer than the ack wait.")
    await lab.control("pause", holder)
    await wait_until(lambda: account_is(lab, "guarded", zoe, 1), lab.settings.ack_wait_s * 4 + 20, f"the redelivery of {Zoe} #1")
    await say(f"NATS redelivered {Zoe} #1 to {', '.join(others)}, which applied it.")
    before = lab.counts.total("duplicates", name=holder)
    await say(f"{holder} wakes up (SIGCONT) still holding its stale copy of {Zoe} #1.")
    await lab.control("resume", holder)
    await lab.control("normal", holder)
    await wait_until(lambda: lab.counts.total("duplicates", name=holder) > before, 20, f"{holder} to process its stale event")
    await say(f"The guard saw number 1 <= last 1: {holder} acknowledged its stale copy as a duplicate and applied nothing.")
    await wait_drained(lab, timeout=30)


async def crash_after_commit(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    carl = await fresh_user(lab, "carl")
    Carl = carl.capitalize()
    duplicates_before = lab.counts.total("duplicates", mode="guarded")
    await say("Every listener is told to crash right after its next commit, before it acknowledges.")
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("crash", name)
    await say(f"{Carl} deposits $50 (#1).")
    await lab.publisher.record("deposit", carl, 5000)

    def crashed(mode: Mode) -> list[str]:
        return [e.name for e in lab.supervisor.members(mode) if e.state == "crashed"]  # type: ignore[union-attr]

    await wait_until(lambda: crashed("guarded") and crashed("naive"), 20, "the armed listeners to crash")
    victims = crashed("guarded") + crashed("naive")
    await say(f"{', '.join(victims)} committed {Carl} #1 and died before the ack. Restarting them.")
    for name in victims:
        await lab.control("restart", name)
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        if name not in victims:
            await lab.control("normal", name)
    await wait_drained(lab, timeout=lab.settings.ack_wait_s * 4 + 30)
    await wait_until(
        lambda: lab.counts.total("duplicates", mode="guarded") > duplicates_before, 10, "the guarded duplicate to be reported"
    )
    await say(
        f"After the ack wait {Carl} #1 came back: the guarded group acked it as a duplicate,"
        " the naive group deposited it a second time."
    )


async def out_of_order(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.nc is not None
    await prepare_listeners(lab)
    olga = await fresh_user(lab, "olga")
    deferred_before = _deferred(lab)
    events = [AccountEvent.new("deposit" if n % 3 else "withdraw", olga, 1000 * n, n) for n in range(1, 13)]
    rng.shuffle(events)
    order = " ".join(f"#{e.number}" for e in events)
    await say(f"{olga.capitalize()}'s events #1..#12 are published straight to the subjects in shuffled order: {order}")
    js = lab.nc.jetstream()
    for event in events:
        await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id})
    await wait_drained(lab, timeout=60)
    await say(f"The guard deferred early ones {_deferred(lab) - deferred_before} times and applied #1..#12 in order.")


async def server_restart(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None
    await prepare_listeners(lab)
    users = ["sam", "sue", "sid"]
    await say("150 transactions flow for Sam, Sue and Sid.")
    await record_random(lab.publisher, rng, users, 150)
    await say("The NATS server restarts (same store) while events are in flight and in the outbox.")
    restart = asyncio.create_task(lab.restart_server())
    await record_random(lab.publisher, rng, users, 150)
    await restart
    await say("Listeners and the outbox relay reconnect by themselves; 300 events in all.")
    await wait_drained(lab, timeout=90)


async def publisher_crash(lab: Lab, say: Say, rng: random.Random) -> None:
    await prepare_listeners(lab)
    pat = await fresh_user(lab, "pat")
    Pat = pat.capitalize()
    base = [sys.executable, "-m", "dashboard.commands", "publish", "--data-dir", str(lab.settings.data_dir), "--nats-url", lab.url]
    await say(f"A publisher process writes {Pat}'s deposit of $30 (#1) to its transactions database and dies before publishing.")
    await _run_publisher(base + ["deposit", pat, "30", "--crash", "before-publish"])
    await say(f"Another writes {Pat}'s deposit of $20 (#2), gets the PubAck, and dies before marking it published.")
    await _run_publisher(base + ["deposit", pat, "20", "--crash", "after-publish"])
    await say("The lab's outbox relay finds both rows and sends them; the stream drops the resend of #2 (same Nats-Msg-Id).")
    await wait_drained(lab, timeout=30)
    stored = sum(channel.per_user.get(pat, 0) for channel in (await lab.channel_stats()).values())
    await say(f"The stream holds {stored} events for {Pat}: each transaction once.")


async def _run_publisher(command: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError("the publisher process did not finish within 60 s") from None
    if process.returncode != os.EX_SOFTWARE:
        raise RuntimeError(f"publisher did not crash as asked ({process.returncode}): {stderr.decode().strip()}")


async def poison(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.nc is not None
    await prepare_listeners(lab)
    pia = await fresh_user(lab, "pia")
    Pia = pia.capitalize()
    poison_before = lab.counts.total("poison", mode="guarded")
    good = [AccountEvent.new("deposit", pia, 500 * n, n) for n in (1, 2, 3)]
    template = good[0].to_dict()
    subject = good[0].subject
    bad = [
        ("not UTF-8", subject, b"\xff\xfe\x00"),
        ("not JSON", subject, b"{deposit: 5"),
        ("missing number", subject, json.dumps({k: v for k, v in template.items() if k != "number"}).encode()),
        ("amount as text", subject, json.dumps({**template, "amountCents": "500"}).encode()),
        ("negative amount", subject, json.dumps({**template, "amountCents": -500}).encode()),
        ("unknown type", subject, json.dumps({**template, "type": "account:steal"}).encode()),
        ("user differs from subject", "account.deposit.mallory", json.dumps(template).encode()),
        ("markup in user id", subject, json.dumps({**template, "userId": f"[b]{pia}[/b]"}).encode()),
        ("oversized", subject, json.dumps({**template, "id": "x" * 8000}).encode()),
    ]
    await say(f"{len(bad)} malformed events ({', '.join(kind for kind, _, _ in bad)}) among {Pia}'s 3 good ones.")
    js = lab.nc.jetstream()
    mixed: list[tuple[str, bytes]] = [(subject, payload) for _, subject, payload in bad]
    for index, event in enumerate(good):
        mixed.insert(index * 4, (event.subject, event.to_json()))
    for subject, payload in mixed:
        await js.publish(subject, payload)
    await wait_drained(lab, timeout=30)
    # Acknowledged is not yet reported: wait for the listeners' status to count them.
    await wait_until(
        lambda: lab.counts.total("poison", mode="guarded") - poison_before >= len(bad), 10, "the poison to be reported"
    )
    recorded = lab.counts.total("poison", mode="guarded") - poison_before
    await say(f"Every malformed event was terminated and recorded as poison ({recorded}); {Pia}'s deposits were applied.")


WORK_MS = 10


async def one_copy(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.supervisor is not None
    supervisor = lab.supervisor
    await prepare_listeners(lab)
    if not alive(lab, "guarded"):
        await lab.control("add")
        await wait_listeners_ready(lab)
    first, *others = alive(lab, "guarded")
    for name in others:
        await lab.control("kill", name)
    users = [await fresh_user(lab, f"u{i}") for i in range(10)]
    await say(f"Each event now costs {WORK_MS} ms of work (a slow downstream call), as in a real service.")
    await say(f"Phase 1: one copy of the Account Service (listener {first} alone) works off a backlog of 300 events.")
    rate_one = await _timed_backlog(lab, rng, 300, users)
    await say(f"One copy: {rate_one:,.0f} events/s.")
    for name in others:
        await lab.control("restart", name)
    while len(alive(lab, "guarded")) < 3:
        await lab.control("add")
    await wait_listeners_ready(lab)
    copies = len(alive(lab, "guarded"))
    await say(f"Phase 2: a group of {copies} copies works off the next 300.")
    rate_group = await _timed_backlog(lab, rng, 300, users)
    await say(f"Group of {copies}: {rate_group:,.0f} events/s ({rate_group / rate_one:.1f}x), and every balance still right.")
    await say("Phase 3: every copy dies (SIGKILL); with one copy that is the whole service: nothing is processed.")
    group = alive(lab, "guarded")
    for name in group:
        await lab.control("kill", name)
    await record_random(lab.publisher, rng, users, 50)
    await wait_until(lambda: _pending(lab, 50), 20, "50 events to pile up")
    await say(f"50 events wait in the stream with no listener; restarting {first} drains them.")
    await lab.control("restart", first)
    await wait_drained(lab, timeout=60, modes=("guarded",))
    for name in group:
        if not supervisor.get(name).alive:
            await lab.control("restart", name)
    await prepare_listeners(lab)


async def _pending(lab: Lab, count: int) -> bool:
    info = await lab.consumer_info(GUARDED_GROUP)
    return info.num_pending >= count


async def _timed_backlog(lab: Lab, rng: random.Random, count: int, users: list[str]) -> float:
    """Pause the guarded listeners, queue `count` events, resume them and time the drain."""
    assert lab.supervisor is not None and lab.transactions is not None
    names = alive(lab, "guarded")
    for name in names:
        await lab.control("slow", name, slow_ms=WORK_MS)
        await lab.control("pause", name)
    await record_random(lab.publisher, rng, users, count)
    await wait_until(lambda: _unpublished_is_zero(lab), 60, "the outbox to empty")
    started = time.monotonic()
    for name in names:
        await lab.control("resume", name)
    await wait_drained(lab, timeout=120, modes=("guarded",))
    return count / (time.monotonic() - started)


async def _unpublished_is_zero(lab: Lab) -> bool:
    assert lab.transactions is not None
    return await lab.transactions.count_unpublished() == 0


async def naive_vs_guarded(lab: Lab, say: Say, rng: random.Random) -> None:
    await say("The same faults hit both groups: a crash after commit, a kill in flight, shuffled events.")
    await crash_after_commit(lab, say, rng)
    await slides(lab, say)
    await out_of_order(lab, say, rng)
    report = await lab.check()
    naive = report.naive
    if naive is not None:
        await say(
            f"Naive damage: lost={naive.lost} duplicated={naive.duplicated} out_of_order={naive.out_of_order}"
            f" wrong balances={naive.wrong_balance}; guarded: {'clean' if report.guarded.clean else 'BROKEN'}."
        )


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("slides", "the seed's example: a withdrawal overtakes a deposit held by a dying listener", slides),
        Scenario("kill-in-flight", "SIGKILL a listener holding unacknowledged events; survivors get them after the ack wait", kill_in_flight),
        Scenario("zombie", "pause a listener past the ack wait; when it wakes, the guard rejects its stale work", zombie),
        Scenario("crash-after-commit", "a listener dies between commit and ack; the redelivery is a duplicate", crash_after_commit),
        Scenario("out-of-order", "one user's events published straight to the subjects in shuffled order", out_of_order),
        Scenario("server-restart", "restart nats-server with events in flight and in the outbox", server_restart),
        Scenario("publisher-crash", "the publisher dies between writing and publishing; the outbox sends it once", publisher_crash),
        Scenario("poison", "malformed events of every kind among good ones: terminated, recorded, skipped", poison),
        Scenario("one-copy", "the rejected fix: one listener is correct but slow and a single point of failure", one_copy, listeners=1),
        Scenario("naive-vs-guarded", "the same faults against both groups, the naive group's damage counted", naive_vs_guarded),
    )
}


async def run_scenario(
    scenario: Scenario, settings: Settings, say: Say, rng: random.Random | None = None
) -> tuple[list[AccountRow], list[AccountRow], CheckReport]:
    rng = rng or random.Random()
    lab = Lab(settings)
    await lab.start(listeners=scenario.listeners, naive=scenario.naive)
    try:
        await scenario.run(lab, say, rng)
        await wait_drained(lab, timeout=settings.ack_wait_s * 4 + 30)
        return await lab.accounts("guarded"), await lab.accounts("naive"), await lab.check()
    finally:
        await lab.stop()
