"""The failure library: the scripted steps of every scenario but the first (see `scenarios`).

Each is an async function of a `Lab`, a `say` callback and a seeded `random.Random`. A caption is
one step: the action it announces runs after `say` returns, however long that took (the dashboard
waits for a key), so no step depends on the time between two captions.
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
from dashboard.lab.traffic import record_random
from dashboard.lab.waits import wait_until
from listeners.accounts import Mode
from listeners.groups import GUARDED_GROUP
from publisher.credentials import url_for_child
from publisher.events import AccountEvent

Say = Callable[[str], Awaitable[None]]


def deferred_count(lab: Lab) -> int:
    return lab.counts.total("deferred", mode="guarded")


async def hold_one(lab: Lab, mode: Mode, kind: str, user: str, amount_cents: int) -> str:
    """Slow every live listener of `mode`, then record the transaction; the one that takes it holds it.

    Slowed first: a listener at normal speed would apply the event before it could be held.
    """
    assert lab.publisher is not None
    for name in alive(lab, mode):
        await lab.control("slow", name, slow_ms=HOLD_MS)
    event = await lab.publisher.record(kind, user, amount_cents)
    await wait_until(
        lambda: holder_of(lab, mode, user, event.number) is not None,
        20,
        f"a {mode} listener to take {event.describe()}",
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
    ack_wait = lab.settings.ack_wait_s
    await say(f"{Kim} deposits $10 (#1); every guarded listener slows down so the one that takes it holds it.")
    holder = await hold_one(lab, "guarded", "deposit", kim, 1000)
    # The kill and Kim's next events are one step: they must be published before #1 comes back,
    # however long the caption is read.
    await say(
        f"Listener {holder} holds {Kim} #1 unacknowledged and is killed (SIGKILL); {Kim}'s next 5 events follow at once."
    )
    redelivered_before = lab.counts.total("redelivered", mode="guarded")
    await lab.control("kill", holder)
    await release(lab, alive(lab, "guarded"))
    await record_random(lab.publisher, rng, [kim], 5)
    await say(
        f"Until {Kim} #1 comes back after the ack wait ({ack_wait:g} s), {Kim}'s later events are early:"
        " the other listeners hand them back instead of applying them."
    )
    await wait_drained(lab, timeout=ack_wait * 4 + 30, modes=("guarded",))
    redeliveries = lab.counts.total("redelivered", mode="guarded") - redelivered_before
    await say(
        f"The others applied {Kim} #1 after its redelivery, then #2 to #6 ({redeliveries} redeliveries, early events included)."
    )
    await lab.control("restart", holder)


async def zombie(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    zoe = await fresh_user(lab, "zoe")
    Zoe = zoe.capitalize()
    await say(f"{Zoe} deposits $25 (#1); the guarded listener that takes it holds it, unacknowledged.")
    holder = await hold_one(lab, "guarded", "deposit", zoe, 2500)
    others = [name for name in alive(lab, "guarded") if name != holder]
    await release(lab, others)
    await say(
        f"Listener {holder} is frozen (SIGSTOP) holding {Zoe} #1, for longer than the ack wait ({lab.settings.ack_wait_s:g} s)."
    )
    await lab.control("pause", holder)
    await wait_until(
        lambda: account_is(lab, "guarded", zoe, 1), lab.settings.ack_wait_s * 4 + 20, f"the redelivery of {Zoe} #1"
    )
    await say(f"NATS redelivered {Zoe} #1 to {', '.join(others)}, which applied it.")
    before = lab.counts.total("duplicates", name=holder)
    await say(f"{holder} wakes up (SIGCONT) like a zombie, still holding its stale copy of {Zoe} #1.")
    await lab.control("resume", holder)
    await lab.control("normal", holder)
    await wait_until(
        lambda: lab.counts.total("duplicates", name=holder) > before, 20, f"{holder} to process its stale event"
    )
    await say(
        f"The guard saw {Zoe} #1 was already processed: {holder} acknowledged its stale copy as a duplicate and applied nothing."
    )
    await wait_drained(lab, timeout=30)


async def crash_after_commit(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    carl = await fresh_user(lab, "carl")
    Carl = carl.capitalize()
    duplicates_before = lab.counts.total("duplicates", mode="guarded")
    # Arming and the deposit are one step: while a caption is read, other traffic (the dashboard's
    # trickle) would set off the armed crashes instead of Carl's deposit.
    await say(
        f"Every listener is told to crash right after its next commit (its database write), before it"
        f" acknowledges. Then {Carl} deposits $50 (#1)."
    )
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("crash", name)
    await lab.publisher.record("deposit", carl, 5000)

    def crashed(mode: Mode) -> list[str]:
        return [e.name for e in lab.supervisor.members(mode) if e.state == "crashed"]  # type: ignore[union-attr]

    await wait_until(lambda: crashed("guarded") and crashed("naive"), 20, "the armed listeners to crash")
    victims = crashed("guarded") + crashed("naive")
    # Disarm the others before the caption: while it is read, the redelivery of Carl #1 may reach one
    # of them, and it must count as a duplicate, not set off another crash.
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("normal", name)
    await say(f"{', '.join(victims)} committed {Carl} #1 and died before acknowledging it. Restarting them.")
    for name in victims:
        await lab.control("restart", name)
    await wait_drained(lab, timeout=lab.settings.ack_wait_s * 4 + 30)
    await wait_until(
        lambda: lab.counts.total("duplicates", mode="guarded") > duplicates_before,
        10,
        "the guarded duplicate to be reported",
    )
    await say(
        f"After the ack wait {Carl} #1 came back: the guarded group acknowledged it as a duplicate,"
        " the naive group deposited it a second time."
    )


async def out_of_order(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.nc is not None
    await prepare_listeners(lab)
    olga = await fresh_user(lab, "olga")
    deferred_before = deferred_count(lab)
    events = [AccountEvent.new("deposit" if n % 3 else "withdraw", olga, 1000 * n, n) for n in range(1, 13)]
    rng.shuffle(events)
    order = " ".join(f"#{e.number}" for e in events)
    await say(
        f"{olga.capitalize()}'s events #1..#12 go straight to NATS, past the publisher, in shuffled order: {order}"
    )
    js = lab.nc.jetstream()
    for event in events:
        await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id})
    await wait_drained(lab, timeout=60)
    await say(
        f"The guard deferred early ones {deferred_count(lab) - deferred_before} times and applied #1..#12 in order."
    )


async def server_restart(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None
    await prepare_listeners(lab)
    users = ["sam", "sue", "sid"]
    await say("150 transactions for Sam, Sue and Sid.")
    await record_random(lab.publisher, rng, users, 150)
    await say(
        "The NATS server restarts (keeping its stored events) while 150 more are recorded: some are on their"
        " way to listeners, some wait in the publisher's outbox."
    )
    restart = asyncio.create_task(lab.restart_server())
    await record_random(lab.publisher, rng, users, 150)
    await restart
    await say("Listeners and the outbox relay reconnect by themselves and carry on: 300 events in all.")
    await wait_drained(lab, timeout=90)


async def publisher_crash(lab: Lab, say: Say, rng: random.Random) -> None:
    await prepare_listeners(lab)
    pat = await fresh_user(lab, "pat")
    Pat = pat.capitalize()
    url_args, url_env = url_for_child(lab.url)
    base = [sys.executable, "-m", "dashboard.commands", "publish", "--data-dir", str(lab.settings.data_dir), *url_args]
    env = {**os.environ, **url_env} if url_env else None
    await say(
        f"A publisher process writes {Pat}'s deposit of $30 (#1) to its transactions database and dies before publishing."
    )
    await _run_publisher(base + ["deposit", pat, "30", "--crash", "before-publish"], env)
    await say(f"Another writes {Pat}'s deposit of $20 (#2), gets the PubAck, and dies before marking it published.")
    await _run_publisher(base + ["deposit", pat, "20", "--crash", "after-publish"], env)
    await say(
        "The lab's outbox relay finds both rows and sends them; the stream drops the resend of #2 (same event id)."
    )
    await wait_drained(lab, timeout=30)
    stored = sum(channel.per_user.get(pat, 0) for channel in (await lab.channel_stats()).values())
    await say(f"The stream holds {stored} events for {Pat}: each transaction once.")


async def _run_publisher(command: list[str], env: dict[str, str] | None) -> None:
    """Run a publisher process to its end; it inherits this one's environment (the credentials)."""
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
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
    await say(
        f"Every malformed event was set aside for good (terminated) and recorded as poison ({recorded}); {Pia}'s deposits were applied."
    )


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
    await say(
        f"Group of {copies}: {rate_group:,.0f} events/s ({rate_group / rate_one:.1f}x), and every balance still right."
    )
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
