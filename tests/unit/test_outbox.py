"""The outbox on a real file: its writes end however their caller ends, an error SQLite met is the
error the caller gets, and an event's state is read from its row."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cancelling import MAX_STEPS, cancel_after

from publisher.sqlite import fetch_all, open_sqlite
from publisher.transactions import SCHEMA, TransactionsDB

REQUESTS = [("deposit", "jim", 100), ("deposit", "mary", 200), ("withdraw", "jim", 50)]


@pytest.fixture
async def outbox(tmp_path: Path):
    db = await TransactionsDB.open(tmp_path / "transactions.db")
    yield db
    await db.close()


def rows(path: Path) -> list[tuple[str, int, str | None]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT user_id, number, published_at FROM transactions ORDER BY rowid").fetchall()


@pytest.mark.parametrize("repeatedly", [False, True], ids=["cancelled-once", "cancelled-repeatedly"])
async def test_a_cancelled_record_writes_all_or_nothing_and_leaves_the_outbox_usable(
    outbox: TransactionsDB, repeatedly: bool
) -> None:
    for steps in range(MAX_STEPS):
        before = len(rows(outbox.path))
        result = await cancel_after(steps, outbox.record_many(REQUESTS), repeatedly=repeatedly)
        assert len(rows(outbox.path)) - before in (0, len(REQUESTS))
        if result is not None:
            break
    else:
        pytest.fail(f"record_many did not finish within {MAX_STEPS} loop steps")
    # No transaction was left open and no number was handed out twice or skipped.
    await outbox.record("deposit", "jim", 1)
    numbers = [number for user, number, _ in rows(outbox.path) if user == "jim"]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("repeatedly", [False, True], ids=["cancelled-once", "cancelled-repeatedly"])
async def test_a_cancelled_mark_published_marks_all_or_nothing_and_leaves_the_outbox_usable(
    outbox: TransactionsDB, repeatedly: bool
) -> None:
    events = await outbox.record_many(REQUESTS)
    acks = [(event.id, seq) for seq, event in enumerate(events, 1)]

    async def mark() -> bool:
        await outbox.mark_published(acks)
        return True

    for steps in range(MAX_STEPS):
        finished = await cancel_after(steps, mark(), repeatedly=repeatedly)
        published = {published_at is not None for _, _, published_at in rows(outbox.path)}
        assert len(published) == 1, "some rows marked published, some not"
        if finished:
            break
        # Back into the outbox, through another connection: it would wait on a transaction left open.
        with closing(sqlite3.connect(outbox.path, timeout=1)) as other, other:
            other.execute("UPDATE transactions SET published_at = NULL, stream_seq = NULL")
    else:
        pytest.fail(f"mark_published did not finish within {MAX_STEPS} loop steps")
    with closing(sqlite3.connect(outbox.path)) as other:
        assert other.execute("SELECT stream_seq FROM transactions ORDER BY rowid").fetchall() == [(1,), (2,), (3,)]
    await outbox.record("deposit", "jim", 1)


async def test_a_full_disk_is_the_error_the_recorder_gets(tmp_path: Path) -> None:
    path = tmp_path / "transactions.db"
    db = await open_sqlite(path, SCHEMA)
    outbox = TransactionsDB(db, None, path)
    try:
        (pages,) = (await fetch_all(db, "PRAGMA page_count"))[0]
        await db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.OperationalError) as caught:
            await outbox.record_many([("deposit", f"user{n}", 100) for n in range(2_000)])
        # SQLite rolled back by itself; a second rollback would have answered "no transaction is active".
        assert caught.value.sqlite_errorname == "SQLITE_FULL"
        await db.execute(f"PRAGMA max_page_count = {pages * 1000}")
        event = await outbox.record("deposit", "jim", 100)
    finally:
        await outbox.close()
    assert event.number == 1
    assert rows(path) == [("jim", 1, None)]


async def test_an_events_state_is_read_from_its_row(outbox: TransactionsDB) -> None:
    event = await outbox.record("deposit", "jim", 100)
    assert await outbox.stream_seq(event.id) is None
    # Another connection (another process's relay) marks it published.
    other = await TransactionsDB.open(outbox.path)
    try:
        await other.mark_published([(event.id, 42)])
    finally:
        await other.close()
    assert await outbox.stream_seq(event.id) == 42
    with pytest.raises(LookupError, match="no transaction nope"):
        await outbox.stream_seq("nope")
