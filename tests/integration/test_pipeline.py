"""The event system end to end against a real nats-server: publish, deliver, guard, redeliver."""

from __future__ import annotations

import json
import os
import random
import sqlite3

import pytest

from dashboard.lab.lab import Lab
from dashboard.lab.logs import listener_log
from dashboard.lab.probes import holder_of, wait_drained, wait_listeners_ready
from dashboard.lab.waits import wait_until
from publisher.events import AccountEvent


def applied_rows(lab: Lab, mode: str = "guarded") -> list[tuple[str, int, str, str]]:
    name = "accounts.db" if mode == "guarded" else "accounts-naive.db"
    db = sqlite3.connect(lab.settings.data_dir / name)
    try:
        return db.execute("SELECT user_id, number, outcome, listener FROM applied_events ORDER BY rowid").fetchall()
    finally:
        db.close()


async def balances(lab: Lab, mode: str = "guarded") -> dict[str, tuple[int, int]]:
    return {row.user_id: (row.last_number, row.balance_cents) for row in await lab.accounts(mode)}


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_published_events_are_applied(make_lab, monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    # The listeners run on the loop NATSLAB_LOOP names (uvloop where it is installed, by default).
    monkeypatch.setenv("NATSLAB_LOOP", loop)
    lab = await make_lab(listeners=2, naive=1)
    await wait_listeners_ready(lab)
    for name in ("A", "B", "N1"):
        log = listener_log(lab.settings.data_dir, name).read_text()
        assert f"listener {name} starting (" in log and log.split("\n")[0].endswith(f", {loop} loop)")
    result = await lab.publisher.publish("deposit", "mary", 4000)
    assert result.event.number == 1 and result.stream_seq == 1
    await lab.publisher.publish("deposit", "jim", 7000)
    await lab.publisher.publish("withdraw", "jim", 2500)
    await wait_drained(lab, timeout=30)
    assert await balances(lab) == {"jim": (2, 4500), "mary": (1, 4000)}
    assert await balances(lab, "naive") == {"jim": (2, 4500), "mary": (1, 4000)}
    report = await lab.check()
    assert report.ok, report.problems


async def test_shuffled_numbers_published_straight_to_subjects_apply_in_order(make_lab) -> None:
    lab = await make_lab(listeners=2)
    await wait_listeners_ready(lab)
    rng = random.Random(7)
    events = [AccountEvent.new("deposit", "outsider", 100 * n, n) for n in range(1, 41)]
    rng.shuffle(events)
    js = lab.nc.jetstream()
    for event in events:
        await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id})
    await wait_drained(lab, timeout=60)
    numbers = [number for user, number, _, _ in applied_rows(lab) if user == "outsider"]
    assert numbers == list(range(1, 41))
    assert await balances(lab) == {"outsider": (40, sum(100 * n for n in range(1, 41)))}
    statuses = [lab.statuses[name] for name in ("A", "B")]
    assert sum(s.counters.deferred for s in statuses) > 0, "shuffled events should have been deferred"
    assert (await lab.check()).ok


async def test_killed_listener_events_are_redelivered_and_applied_once(make_lab) -> None:
    lab = await make_lab(listeners=2)
    await wait_listeners_ready(lab)
    await lab.control("slow", "A", slow_ms=600_000)
    await lab.control("slow", "B", slow_ms=600_000)
    await lab.publisher.record("deposit", "jim", 7000)
    await wait_until(lambda: holder_of(lab, "guarded", "jim", 1) is not None, 20, "a listener to hold jim #1")
    holder = holder_of(lab, "guarded", "jim", 1)
    other = "B" if holder == "A" else "A"
    await lab.control("kill", holder)
    await lab.control("normal", other)
    await lab.publisher.record("deposit", "jim", 100)
    await wait_drained(lab, timeout=30)
    rows = applied_rows(lab)
    assert [(user, number, listener) for user, number, _, listener in rows] == [("jim", 1, other), ("jim", 2, other)]
    assert lab.statuses[other].counters.redelivered >= 1
    assert await balances(lab) == {"jim": (2, 7100)}


async def test_crash_after_commit_gives_one_duplicate_that_is_not_applied(make_lab) -> None:
    lab = await make_lab(listeners=1)
    await wait_listeners_ready(lab)
    await lab.control("crash", "A")
    await lab.publisher.record("deposit", "mary", 4000)
    process = lab.supervisor.get("A").process
    await wait_until(lambda: process.poll() is not None, 20, "listener A to crash")
    assert process.returncode == os.EX_SOFTWARE
    assert await balances(lab) == {"mary": (1, 4000)}  # committed before the crash
    await lab.control("restart", "A")
    await wait_drained(lab, timeout=30)
    await wait_until(lambda: lab.counts.total("duplicates", name="A") == 1, 10, "the duplicate")
    assert lab.statuses["A"].counters.applied == 0
    assert len(applied_rows(lab)) == 1
    assert await balances(lab) == {"mary": (1, 4000)}


async def test_server_restart_mid_stream_loses_nothing(make_lab) -> None:
    lab = await make_lab(listeners=2, naive=1)
    await wait_listeners_ready(lab)
    rng = random.Random(3)
    users = ["ann", "bob", "cy"]
    for index in range(300):
        await lab.publisher.record("deposit" if rng.random() < 0.7 else "withdraw", rng.choice(users), rng.randint(1, 50) * 100)
        if index == 150:
            await lab.restart_server()
    await wait_drained(lab, timeout=90)
    report = await lab.check()
    assert report.ok, report.problems
    assert report.stream_events == 300
    assert sum(u.expected_last for u in report.users) == 300


async def test_poison_events_are_terminated_and_recorded(make_lab) -> None:
    lab = await make_lab(listeners=2)
    await wait_listeners_ready(lab)
    good = AccountEvent.new("deposit", "mary", 4000, 1).to_dict()
    bad: list[tuple[str, bytes]] = [
        ("account.deposit.mary", b"\xff\xfe not utf-8"),
        ("account.deposit.mary", b"{not json"),
        ("account.deposit.mary", json.dumps({k: v for k, v in good.items() if k != "number"}).encode()),
        ("account.deposit.mary", json.dumps({**good, "amountCents": "40"}).encode()),
        ("account.deposit.mary", json.dumps({**good, "type": "account:steal"}).encode()),
        ("account.deposit.eve", json.dumps(good).encode()),  # user id differs from the subject
        ("account.deposit.mary", json.dumps({**good, "amountCents": -4000}).encode()),
        ("account.deposit.mary", json.dumps({**good, "id": "x" * 5000}).encode()),  # oversized
        ("account.deposit.mary", json.dumps({**good, "userId": "[red]x[/red]"}).encode()),
    ]
    js = lab.nc.jetstream()
    for subject, payload in bad[:4]:
        await js.publish(subject, payload)
    await js.publish("account.deposit.mary", json.dumps(good).encode())
    for subject, payload in bad[4:]:
        await js.publish(subject, payload)
    await wait_drained(lab, timeout=30)
    db = sqlite3.connect(lab.settings.data_dir / "accounts.db")
    poison = db.execute("SELECT stream_seq, reason FROM poison_events ORDER BY stream_seq").fetchall()
    db.close()
    assert [seq for seq, _ in poison] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert all(reason for _, reason in poison)
    assert await balances(lab) == {"mary": (1, 4000)}
    # The listeners kept serving after the poison.
    follow_up = AccountEvent.new("deposit", "mary", 100, 2)
    await js.publish(follow_up.subject, follow_up.to_json())
    await wait_drained(lab, timeout=30)
    assert await balances(lab) == {"mary": (2, 4100)}
    report = await lab.check()
    assert report.ok and report.poison_in_stream == 9


async def test_lab_runs_the_same_on_an_external_server(nats_server, make_lab) -> None:
    from dashboard.lab.waits import LabError

    lab = await make_lab(listeners=1, nats_url=nats_server.url)
    assert lab.server is None and lab.url == nats_server.url  # not embedded
    await lab.publisher.publish("deposit", "ext", 500)
    await wait_drained(lab, timeout=30)
    assert await balances(lab) == {"ext": (1, 500)}
    with pytest.raises(LabError, match="external"):
        await lab.restart_server()
