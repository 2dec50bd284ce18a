"""Scenarios: scripted failures on a running lab, narrated one caption per step.

A scenario is an async function of a `Lab` and a `say` callback. The CLI runs it on a fresh embedded
server in a temporary data dir and prints the captions; the dashboard runs the same function on its own
lab and shows the captions on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.lab.checker import format_report, read_transactions
from dashboard.lab.lab import Lab, LabError, wait_until
from dashboard.lab.settings import Settings, UsageError
from listeners.accounts import AccountRow, Mode
from dashboard.commands.listener import setup_file_logging
from listeners.groups import GUARDED_GROUP
from publisher.events import AccountEvent, format_cents
from publisher.service import CRASH_EXIT_CODE

Say = Callable[[str], Awaitable[None]]

# A listener told to be this slow holds what it fetched until it is killed or told `normal`.
HOLD_MS = 600_000


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Lab, Say, random.Random], Awaitable[None]]
    listeners: int = 2
    naive: int = 1


def _alive(lab: Lab, mode: Mode) -> list[str]:
    assert lab.supervisor is not None
    return [entry.name for entry in lab.supervisor.members(mode) if entry.alive]


async def wait_listeners_ready(lab: Lab, timeout: float = 20.0) -> None:
    """Every live listener has reported a status from its current process and is fetching.

    A listener that ends before it is ready fails the wait at once, with the reason it gave.
    """
    assert lab.supervisor is not None
    supervisor = lab.supervisor
    waiting = {entry.name: entry.pid for entry in supervisor.listeners.values() if entry.alive}

    def ready() -> bool:
        lab.check_server()
        supervisor.poll()
        for name, pid in waiting.items():
            entry = supervisor.listeners[name]
            if entry.pid == pid and entry.state in ("crashed", "exited"):
                raise LabError(f"listener {name} exited with code {entry.exit_code} before it was ready: {entry.reason}")
        for entry in supervisor.listeners.values():
            if not entry.alive:
                continue
            status = lab.statuses.get(entry.name)
            if status is None or status.get("pid") != entry.pid or status.get("state") not in ("running", "slow"):
                return False
        return True

    await wait_until(ready, timeout, "the listeners to start")


def holder_of(lab: Lab, mode: Mode, user: str, number: int) -> str | None:
    """The live listener of `mode` that has the event user #number in flight, if any."""
    for name in _alive(lab, mode):
        status = lab.statuses.get(name) or {}
        for delivery in status.get("inFlight", []):
            if delivery.get("userId") == user and delivery.get("number") == number:
                return name
    return None


async def account_is(lab: Lab, mode: Mode, user: str, last_number: int) -> bool:
    return any(row.user_id == user and row.last_number >= last_number for row in await lab.accounts(mode))


async def prepare_listeners(lab: Lab) -> None:
    """Every listener running at normal speed: resume the paused, restart the dead, clear faults."""
    assert lab.supervisor is not None
    for entry in list(lab.supervisor.listeners.values()):
        if entry.alive and entry.state == "paused":
            lab.supervisor.resume(entry.name)
        elif not entry.alive:
            lab.supervisor.restart(entry.name)
    await wait_listeners_ready(lab)
    for entry in lab.supervisor.listeners.values():
        await lab.send_control(entry.name, "normal")


async def fresh_user(lab: Lab, base: str) -> str:
    """`base`, or `base2`, `base3`... : a user with no events yet, so a story starts at #1."""
    taken: set[str] = set()
    for channel in (await lab.channel_stats()).values():
        taken.update(channel.per_user)
    published, unpublished = await read_transactions(lab.settings.transactions_db)
    taken.update(event.user_id for event in published + unpublished)
    for mode in ("guarded", "naive"):
        taken.update(row.user_id for row in await lab.accounts(mode))  # type: ignore[arg-type]
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}{suffix}"
    return name


def _deferred(lab: Lab) -> int:
    return lab.total_counter("deferred", "guarded")


async def slides(lab: Lab, say: Say, rng: random.Random | None = None) -> None:
    """The seed's example: Jim's withdrawal overtakes his second deposit."""
    assert lab.publisher is not None and lab.supervisor is not None
    ack_wait = lab.settings.ack_wait_s
    await prepare_listeners(lab)
    jim, mary = await fresh_user(lab, "jim"), await fresh_user(lab, "mary")
    Jim, Mary = jim.capitalize(), mary.capitalize()
    guarded, naive = ", ".join(_alive(lab, "guarded")), ", ".join(_alive(lab, "naive"))
    await say(f"Guarded listeners {guarded} share the queue group account-service; naive {naive} reads account-service-naive.")

    await say(f"Publisher: {Mary} deposits $40 ({Mary} #1), {Jim} deposits $70 ({Jim} #1).")
    await lab.publisher.record("deposit", mary, 4000)
    await lab.publisher.record("deposit", jim, 7000)
    for mode in ("guarded", "naive"):
        await wait_until(lambda m=mode: account_is(lab, m, jim, 1), 20, f"{Jim} #1 in the {mode} database")
        await wait_until(lambda m=mode: account_is(lab, m, mary, 1), 20, f"{Mary} #1 in the {mode} database")

    await say(f"Every listener slows down, so whoever takes {Jim}'s next deposit sits on it.")
    for name in _alive(lab, "guarded") + _alive(lab, "naive"):
        await lab.send_control(name, f"slow {HOLD_MS}")
    await lab.publisher.record("deposit", jim, 4000)
    await wait_until(lambda: holder_of(lab, "guarded", jim, 2) is not None, 20, f"a guarded listener to take {Jim} #2")
    await wait_until(lambda: holder_of(lab, "naive", jim, 2) is not None, 20, f"the naive listener to take {Jim} #2")
    slow_guarded = holder_of(lab, "guarded", jim, 2)
    slow_naive = holder_of(lab, "naive", jim, 2)
    assert slow_guarded is not None and slow_naive is not None

    await say(f"Listener {slow_guarded} holds {Jim}'s +$40 (#2) and dies before acknowledging it (SIGKILL); so does {slow_naive}.")
    # From the kill on, #2 comes back after one ack wait; #3 must reach the survivors before that.
    lab.supervisor.kill(slow_guarded)
    lab.supervisor.kill(slow_naive)
    for name in _alive(lab, "guarded") + _alive(lab, "naive"):
        await lab.send_control(name, "normal")
    deferred_before = _deferred(lab)
    await say(f"{Jim} withdraws $100 ({Jim} #3). It reaches the survivors before the deposit it depends on.")
    await lab.publisher.record("withdraw", jim, 10000)
    lab.supervisor.restart(slow_naive)
    await wait_until(lambda: _deferred(lab) > deferred_before, 20, f"a guarded listener to defer {Jim} #3")
    await wait_until(lambda: account_is(lab, "naive", jim, 3), 20, f"the naive listener to process {Jim} #3")
    await say("Guarded: #3 is early (last processed is 1), so it is not acknowledged and comes back later.")
    await say(f"Naive: #3 is applied as it arrives; $100 is more than {Jim}'s $70, so the withdrawal is rejected.")

    await say(f"After the ack wait ({ack_wait:g} s) NATS redelivers #2; the guard applies #2, then #3.")
    await lab.wait_drained(timeout=ack_wait * 4 + 30)
    lab.supervisor.restart(slow_guarded)
    await wait_listeners_ready(lab)
    ends = {mode: dict((r.user_id, r.balance_cents) for r in await lab.accounts(mode)).get(jim, 0) for mode in ("guarded", "naive")}  # type: ignore[arg-type]
    await say(
        f"Drained: every event is processed. Guarded {Jim} ends at {format_cents(ends['guarded'])};"
        f" naive {Jim} ends at {format_cents(ends['naive'])}."
    )


# -- the failure library ---------------------------------------------------------------------------


async def publish_mix(lab: Lab, rng: random.Random, count: int, users: list[str]) -> None:
    """Record `count` random transactions (deposits mostly, some withdrawals) through the outbox."""
    assert lab.publisher is not None
    for _ in range(count):
        kind = "deposit" if rng.random() < 0.65 else "withdraw"
        await lab.publisher.record(kind, rng.choice(users), rng.randint(1, 100) * 100)


async def hold_one(lab: Lab, mode: Mode, kind: str, user: str, amount_cents: int) -> str:
    """Slow every live listener of `mode`, then record the transaction; the one that takes it holds it.

    Slowed first: a listener at normal speed would apply the event before it could be held.
    """
    assert lab.publisher is not None
    for name in _alive(lab, mode):
        await lab.send_control(name, f"slow {HOLD_MS}")
    event = await lab.publisher.record(kind, user, amount_cents)
    await wait_until(
        lambda: holder_of(lab, mode, user, event.number) is not None, 20, f"a {mode} listener to take {event.describe()}"
    )
    holder = holder_of(lab, mode, user, event.number)
    assert holder is not None
    return holder


async def release(lab: Lab, names: list[str]) -> None:
    for name in names:
        await lab.send_control(name, "normal")


async def kill_in_flight(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    kim = await fresh_user(lab, "kim")
    Kim = kim.capitalize()
    await say(f"{Kim} deposits $10 (#1); every guarded listener slows down so the one that takes it holds it.")
    holder = await hold_one(lab, "guarded", "deposit", kim, 1000)
    await say(f"Listener {holder} holds {Kim} #1 unacknowledged. SIGKILL.")
    lab.supervisor.kill(holder)
    await release(lab, _alive(lab, "guarded"))
    await say(f"{Kim}'s next events arrive meanwhile; they are early until #1 comes back after the ack wait ({lab.settings.ack_wait_s:g} s).")
    redelivered_before = lab.total_counter("redelivered", "guarded")
    await publish_mix(lab, rng, 5, [kim])
    await lab.wait_drained(timeout=lab.settings.ack_wait_s * 4 + 30, modes=("guarded",))
    redeliveries = lab.total_counter("redelivered", "guarded") - redelivered_before
    await say(f"The survivors applied {Kim} #1 after its redelivery ({redeliveries} redeliveries, early events included).")
    lab.supervisor.restart(holder)


async def zombie(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    zoe = await fresh_user(lab, "zoe")
    Zoe = zoe.capitalize()
    await say(f"{Zoe} deposits $25 (#1); the guarded listener that takes it holds it.")
    holder = await hold_one(lab, "guarded", "deposit", zoe, 2500)
    others = [name for name in _alive(lab, "guarded") if name != holder]
    await release(lab, others)
    await say(f"Listener {holder} is paused (SIGSTOP) holding {Zoe} #1, longer than the ack wait.")
    lab.supervisor.pause(holder)
    await wait_until(lambda: account_is(lab, "guarded", zoe, 1), lab.settings.ack_wait_s * 4 + 20, f"the redelivery of {Zoe} #1")
    await say(f"NATS redelivered {Zoe} #1 to {', '.join(others)}, which applied it.")
    before = _counter(lab, holder, "duplicates")
    await say(f"{holder} wakes up (SIGCONT) still holding its stale copy of {Zoe} #1.")
    lab.supervisor.resume(holder)
    await lab.send_control(holder, "normal")
    await wait_until(lambda: _counter(lab, holder, "duplicates") > before, 20, f"{holder} to process its stale event")
    await say(f"The guard saw number 1 <= last 1: {holder} acknowledged its stale copy as a duplicate and applied nothing.")
    await lab.wait_drained(timeout=30)


def _counter(lab: Lab, name: str, key: str) -> int:
    return int((lab.statuses.get(name) or {}).get("counters", {}).get(key, 0))


async def crash_after_commit(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.supervisor is not None
    await prepare_listeners(lab)
    carl = await fresh_user(lab, "carl")
    Carl = carl.capitalize()
    duplicates_before = lab.total_counter("duplicates", "guarded")
    await say("Every listener is told to crash right after its next commit, before it acknowledges.")
    for name in _alive(lab, "guarded") + _alive(lab, "naive"):
        await lab.send_control(name, "crash-after-commit")
    await say(f"{Carl} deposits $50 (#1).")
    await lab.publisher.record("deposit", carl, 5000)

    def crashed(mode: Mode) -> list[str]:
        lab.supervisor.poll()  # type: ignore[union-attr]
        return [e.name for e in lab.supervisor.members(mode) if e.state == "crashed"]  # type: ignore[union-attr]

    await wait_until(lambda: crashed("guarded") and crashed("naive"), 20, "the armed listeners to crash")
    victims = crashed("guarded") + crashed("naive")
    await say(f"{', '.join(victims)} committed {Carl} #1 and died before the ack. Restarting them.")
    for name in victims:
        lab.supervisor.restart(name)
    for name in _alive(lab, "guarded") + _alive(lab, "naive"):
        if name not in victims:
            await lab.send_control(name, "normal")
    await lab.wait_drained(timeout=lab.settings.ack_wait_s * 4 + 30)
    await wait_until(
        lambda: lab.total_counter("duplicates", "guarded") > duplicates_before, 10, "the guarded duplicate to be reported"
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
    await lab.wait_drained(timeout=60)
    await say(f"The guard deferred early ones {_deferred(lab) - deferred_before} times and applied #1..#12 in order.")


async def server_restart(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None
    await prepare_listeners(lab)
    users = ["sam", "sue", "sid"]
    await say("150 transactions flow for Sam, Sue and Sid.")
    await publish_mix(lab, rng, 150, users)
    await say("The NATS server restarts (same store) while events are in flight and in the outbox.")
    restart = asyncio.create_task(lab.restart_server())
    await publish_mix(lab, rng, 150, users)
    await restart
    await say("Listeners and the outbox relay reconnect by themselves; 300 events in all.")
    await lab.wait_drained(timeout=90)


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
    await lab.wait_drained(timeout=30)
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
    if process.returncode != CRASH_EXIT_CODE:
        raise RuntimeError(f"publisher did not crash as asked ({process.returncode}): {stderr.decode().strip()}")


async def poison(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.nc is not None
    await prepare_listeners(lab)
    pia = await fresh_user(lab, "pia")
    Pia = pia.capitalize()
    poison_before = lab.total_counter("poison", "guarded")
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
    await lab.wait_drained(timeout=30)
    # Acknowledged is not yet reported: wait for the listeners' status to count them.
    await wait_until(
        lambda: lab.total_counter("poison", "guarded") - poison_before >= len(bad), 10, "the poison to be reported"
    )
    recorded = lab.total_counter("poison", "guarded") - poison_before
    await say(f"Every malformed event was terminated and recorded as poison ({recorded}); {Pia}'s deposits were applied.")


WORK_MS = 10


async def one_copy(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.supervisor is not None
    supervisor = lab.supervisor
    await prepare_listeners(lab)
    if not _alive(lab, "guarded"):
        supervisor.spawn("guarded")
        await wait_listeners_ready(lab)
    first, *others = _alive(lab, "guarded")
    for name in others:
        supervisor.kill(name)
    users = [await fresh_user(lab, f"u{i}") for i in range(10)]
    await say(f"Each event now costs {WORK_MS} ms of work (a slow downstream call), as in a real service.")
    await say(f"Phase 1: one copy of the Account Service (listener {first} alone) works off a backlog of 300 events.")
    rate_one = await _timed_backlog(lab, rng, 300, users)
    await say(f"One copy: {rate_one:,.0f} events/s.")
    for name in others:
        supervisor.restart(name)
    while len(_alive(lab, "guarded")) < 3:
        supervisor.spawn("guarded")
    await wait_listeners_ready(lab)
    copies = len(_alive(lab, "guarded"))
    await say(f"Phase 2: a group of {copies} copies works off the next 300.")
    rate_group = await _timed_backlog(lab, rng, 300, users)
    await say(f"Group of {copies}: {rate_group:,.0f} events/s ({rate_group / rate_one:.1f}x), and every balance still right.")
    await say("Phase 3: every copy dies (SIGKILL); with one copy that is the whole service: nothing is processed.")
    group = _alive(lab, "guarded")
    for name in group:
        supervisor.kill(name)
    await publish_mix(lab, rng, 50, users)
    await wait_until(lambda: _pending(lab, 50), 20, "50 events to pile up")
    await say(f"50 events wait in the stream with no listener; restarting {first} drains them.")
    supervisor.restart(first)
    await lab.wait_drained(timeout=60, modes=("guarded",))
    for name in group:
        if not supervisor.get(name).alive:
            supervisor.restart(name)
    await prepare_listeners(lab)


async def _pending(lab: Lab, count: int) -> bool:
    info = await lab.consumer_info(GUARDED_GROUP)
    return info.num_pending >= count


async def _timed_backlog(lab: Lab, rng: random.Random, count: int, users: list[str]) -> float:
    """Pause the guarded listeners, queue `count` events, resume them and time the drain."""
    assert lab.supervisor is not None and lab.transactions is not None
    names = _alive(lab, "guarded")
    for name in names:
        await lab.send_control(name, f"slow {WORK_MS}")
        lab.supervisor.pause(name)
    await publish_mix(lab, rng, count, users)
    await wait_until(lambda: _unpublished_is_zero(lab), 60, "the outbox to empty")
    started = time.monotonic()
    for name in names:
        lab.supervisor.resume(name)
    await lab.wait_drained(timeout=120, modes=("guarded",))
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


def table_lines(title: str, rows: list[AccountRow]) -> list[str]:
    lines = [title, f"  {'Name':<12} {'Last number':>11} {'Balance':>12}"]
    lines += [f"  {row.user_id:<12} {row.last_number:>11} {format_cents(row.balance_cents):>12}" for row in rows]
    return lines


async def run_scenario(
    scenario: Scenario, settings: Settings, say: Say, rng: random.Random | None = None
) -> tuple[list[AccountRow], list[AccountRow], Any]:
    rng = rng or random.Random()
    lab = Lab(settings)
    await lab.start(listeners=scenario.listeners, naive=scenario.naive)
    try:
        await scenario.run(lab, say, rng)
        await lab.wait_drained(timeout=settings.ack_wait_s * 4 + 30)
        return await lab.accounts("guarded"), await lab.accounts("naive"), await lab.check()
    finally:
        await lab.stop()


def run_scenario_cli(args: argparse.Namespace, settings: Settings) -> int:
    if args.list or not args.name:
        width = max(len(name) for name in SCENARIOS)
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<{width}}  {scenario.summary}")
        return 0 if args.list else 2
    scenario = SCENARIOS.get(args.name)
    if scenario is None:
        raise UsageError(f"unknown scenario {args.name!r}; one of: {', '.join(SCENARIOS)}")
    data_dir = Path(tempfile.mkdtemp(prefix=f"natslab-{scenario.name}-"))
    settings.data_dir = data_dir
    settings.nats_url = None
    setup_file_logging(data_dir, "scenario")
    steps: list[str] = []

    async def say(caption: str) -> None:
        steps.append(caption)
        if not args.json:
            print(f"[{len(steps)}] {caption}", flush=True)

    try:
        guarded, naive, report = asyncio.run(run_scenario(scenario, settings, say, random.Random(args.seed)))
    except BaseException:
        print(f"natslab: scenario {scenario.name} failed; its data and logs are in {data_dir}", file=sys.stderr)
        raise
    if args.json:
        print(
            json.dumps(
                {
                    "scenario": scenario.name,
                    "steps": steps,
                    "guarded": [_row(row) for row in guarded],
                    "naive": [_row(row) for row in naive],
                    "check": report.to_json(),
                },
                indent=2,
            )
        )
    else:
        print()
        print("\n".join(table_lines("Account database (guarded, account-service)", guarded)))
        print("\n".join(table_lines("Account database (naive, account-service-naive)", naive)))
        print()
        print(format_report(report))
    if report.ok:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"data and logs kept in {data_dir}", file=sys.stderr)
    return 0 if report.ok else 1


def _row(row: AccountRow) -> dict[str, Any]:
    return {"name": row.user_id, "lastNumber": row.last_number, "balanceCents": row.balance_cents}
