"""The trickle against the real publisher and nats-server: on schedule, through the outbox."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time

from dashboard.lab.traffic import trickle
from dashboard.lab.waits import cancel, wait_until
from publisher.events import AccountEvent

RATE = 10.0
COUNT = 10


async def test_the_trickle_records_on_schedule_through_the_outbox(make_lab) -> None:
    lab = await make_lab(listeners=0, naive=0)
    recorded: list[tuple[float, AccountEvent]] = []
    started = time.monotonic()
    task = asyncio.create_task(
        trickle(
            lab.publisher,
            random.Random(5),
            ["ann", "bob"],
            RATE,
            on_recorded=lambda e: recorded.append((time.monotonic(), e)),
        )
    )
    try:
        await wait_until(lambda: len(recorded) >= COUNT, 30, f"{COUNT} trickled events")
    finally:
        await cancel(task)
    # Never early: the k-th event is due k/RATE after the trickle started, later than `started`;
    # a loaded machine can only make it later. A burst (no pacing) fails here at once.
    for k, (at, _) in enumerate(recorded):
        assert at - started >= k / RATE, f"event {k} recorded {at - started:.3f} s after the start"
    # Not far behind either: a generous band (a tenth of the pace) that a loaded 2-core machine keeps.
    assert recorded[COUNT - 1][0] - started < COUNT / RATE * 10
    # Through the outbox: every recorded event is published, numbered per user, for the given users.
    await wait_until(lambda: _outbox_empty(lab), 20, "the outbox to empty")
    db = sqlite3.connect(lab.settings.transactions_db)
    try:
        rows = db.execute("SELECT id, user_id, number FROM transactions ORDER BY rowid").fetchall()
    finally:
        db.close()
    ids = [event.id for _, event in recorded]
    # A cancel during a record still writes that one (Publisher.record), so there may be one more.
    assert [row[0] for row in rows[: len(ids)]] == ids and len(rows) - len(ids) in (0, 1)
    for user in ("ann", "bob"):
        numbers = [number for _, row_user, number in rows if row_user == user]
        assert numbers == list(range(1, len(numbers) + 1))
    assert {row[1] for row in rows} <= {"ann", "bob"}
    assert (await lab.stream_info()).state.messages == len(rows)


async def _outbox_empty(lab) -> bool:
    return await lab.transactions.count_unpublished() == 0
