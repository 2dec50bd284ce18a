"""What a listener reports is what its account database did, in the order it did it: a user's
events published straight to the subjects in shuffled order are reported by the guarded listener as
applied #1..#12, each with the rule that let it through, and by the naive one in the order it took
them (docs/design.md, "Listener status"). Real listener processes on a real nats-server."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from pathlib import Path

from dashboard.lab.lab import Lab
from dashboard.lab.probes import fresh_user, wait_drained, wait_listeners_ready
from dashboard.lab.waits import wait_until
from listeners.status import DeliveryReport, ListenerStatus
from publisher.events import AccountEvent

SETTLED = ("applied", "rejected")


def committed_ids(db: Path, user: str) -> list[str]:
    """The event ids of the user's applied_events rows, in commit order."""
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute("SELECT event_id FROM applied_events WHERE user_id = ? ORDER BY rowid", (user,))
        return [event_id for (event_id,) in rows]
    finally:
        connection.close()


async def test_a_shuffled_users_outcomes_are_reported_in_the_order_they_took_effect(make_lab) -> None:
    lab: Lab = await make_lab(listeners=1, naive=1)
    await wait_listeners_ready(lab)
    reports: dict[str, dict[tuple[int, int], DeliveryReport]] = defaultdict(dict)

    def keep(status: ListenerStatus) -> None:
        for report in status.deliveries:
            reports[status.name][(status.pid, report.seq)] = report

    lab.on_status.append(keep)
    olga = await fresh_user(lab, "olga")
    events = [AccountEvent.new("deposit" if n % 3 else "withdraw", olga, 1000 * n, n) for n in range(1, 13)]
    random.Random(5).shuffle(events)
    assert [e.number for e in events] != sorted(e.number for e in events)
    first = next(event for event in events if event.number == 1)
    # Both listeners frozen while the shuffled events but #1 are stored, so each finds them in a few
    # batches rather than one at a time as they are published; all of them early for the guarded one
    # until #1 comes.
    for name in ("A", "N1"):
        await lab.control("pause", name)
    assert lab.nc is not None
    js = lab.nc.jetstream()

    async def publish(event: AccountEvent) -> None:
        await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id})

    for event in events:
        if event is not first:
            await publish(event)
    for name in ("A", "N1"):
        await lab.control("resume", name)

    def of_olga(name: str) -> list[DeliveryReport]:
        return [r for _, r in sorted(reports[name].items()) if r.user_id == olga]

    await wait_until(lambda: any(r.outcome == "deferred" for r in of_olga("A")), 10, "A to find early events")
    await publish(first)
    await wait_drained(lab, timeout=60)

    def all_reported() -> bool:
        return all(sum(r.outcome in SETTLED for r in of_olga(name)) >= 12 for name in ("A", "N1"))

    await wait_until(all_reported, 10, "the listeners to report all 12 outcomes")

    guarded = [r for r in of_olga("A") if r.outcome in SETTLED]
    assert [r.number for r in guarded] == list(range(1, 13))  # seq order is number order
    assert [r.event_id for r in guarded] == committed_ids(lab.settings.data_dir / "accounts.db", olga)
    balance = 0
    for report in guarded:
        assert (report.last_before, report.last_after) == (report.number - 1, report.number)
        assert report.balance_before == balance
        balance = report.balance_after  # type: ignore[assignment]
        if report.outcome == "applied":
            assert report.rule().startswith(f"last {report.number - 1} → {report.number} · ")
        else:
            assert report.rule().startswith("balance ") and " < " in report.rule()
    assert [a.balance_cents for a in await lab.accounts("guarded") if a.user_id == olga] == [balance]
    deferred = [r for r in of_olga("A") if r.outcome == "deferred"]
    assert deferred, "a shuffled batch has early events"
    for report in deferred:
        assert report.last_before is not None and report.number > report.last_before + 1
        assert report.rule() == f"waiting for #{report.last_before + 1} (last is {report.last_before})"

    naive = [r for r in of_olga("N1") if r.outcome in SETTLED]
    # The naive group takes them as they come, and reports them in that same order.
    assert [r.event_id for r in naive] == committed_ids(lab.settings.data_dir / "accounts-naive.db", olga)
    assert all(r.last_before is None and r.balance_before is not None for r in naive)
    assert all(r.rule().startswith(("applied as it came", "balance ")) for r in naive)
