"""The guard and the checker against a sceptical user, on a real server: forged numbers, permanent gaps,
events still on their way, histories that cannot be read, databases that are not ours."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from dashboard.lab.history import HistoryError, read_history
from dashboard.lab.lab import Lab
from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.waits import wait_until
from listeners.groups import GUARDED_GROUP
from publisher.events import AccountEvent, new_event_id, utc_now_iso
from publisher.jetstream import ensure_stream

NATSLAB = [sys.executable, "-m", "dashboard.commands"]


def natslab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*NATSLAB, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def rows(path: Path, sql: str) -> list[tuple]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


async def publish_raw(nc: NATS, user: str, number: int, cents: int, kind: str = "deposit") -> AccountEvent:
    """An event straight to the stream, as a foreign publisher would send it: no transactions.db row."""
    event = AccountEvent(new_event_id(), f"account:{kind}", user, cents, number, utc_now_iso())  # type: ignore[arg-type]
    await nc.jetstream().publish(event.subject, event.to_json())
    return event


def account(lab: Lab, user: str) -> tuple[int, int] | None:
    found = rows(lab.settings.data_dir / "accounts.db", f"SELECT last_number, balance_cents FROM accounts WHERE user_id = '{user}'")
    return found[0] if found else None


async def test_a_different_event_with_a_used_number_is_a_conflict_and_the_check_fails(make_lab) -> None:
    """The repro: a foreign zed #1, then `natslab publish deposit zed 7` records zed #1 too."""
    lab = await make_lab(listeners=1)
    assert lab.nc is not None
    await publish_raw(lab.nc, "zed", 1, 500)
    await wait_until(lambda: account(lab, "zed") == (1, 500), 30, "the foreign zed #1 applied")
    common = ["--data-dir", str(lab.settings.data_dir), "--nats-url", lab.url]
    published = natslab("publish", "deposit", "zed", "7", *common)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("zed #1 deposit $7 ")
    conflicts = lab.settings.data_dir / "accounts.db"
    await wait_until(lambda: rows(conflicts, "SELECT COUNT(*) FROM conflict_events") == [(1,)], 30, "the conflict recorded")
    recorded = rows(conflicts, "SELECT user_id, number, applied_id IS NOT NULL, length(payload) > 0 FROM conflict_events")
    assert recorded == [("zed", 1, 1, 1)]
    assert account(lab, "zed") == (1, 500)  # the $7 is not applied on top of a number already used
    await wait_until(lambda: lab.counts.total("conflicts") == 1, 10, "the listener counting the conflict")
    check = natslab("check", *common)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "conflicts=1" in check.stdout and "FAILED" in check.stdout
    assert "number 1 was published for 2 different events" in check.stdout
    # Which one the guard applied, which one it recorded, and which one the expectation follows.
    real = rows(lab.settings.transactions_db, "SELECT id FROM transactions WHERE user_id = 'zed'")[0][0]
    assert f"{real} (stream seq 2, recorded as a conflict)" in check.stdout
    assert "stream seq 1, applied)" in check.stdout
    assert f"the expected balance counts {real} (the publisher's transactions.db)" in check.stdout


async def test_a_permanent_gap_parks_the_events_behind_it_and_the_missing_event_unparks_them(make_lab) -> None:
    lab = await make_lab(listeners=2, gap_timeout_s=1.0)
    assert lab.nc is not None
    await publish_raw(lab.nc, "ann", 1, 1000)
    await publish_raw(lab.nc, "ann", 3, 300)
    await publish_raw(lab.nc, "ann", 4, 400)
    db = lab.settings.data_dir / "accounts.db"
    unresolved = "SELECT number FROM parked_events WHERE resolved_at IS NULL ORDER BY number"
    await wait_until(lambda: rows(db, unresolved) == [(3,), (4,)], 30, "ann #3 and #4 parked")

    async def nothing_with_the_group() -> bool:
        info = await lab.consumer_info(GUARDED_GROUP)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_until(nothing_with_the_group, 30, "the group to have nothing left: parked events are off its hands")
    assert account(lab, "ann") == (1, 1000)
    common = ["--data-dir", str(lab.settings.data_dir), "--nats-url", lab.url]
    stuck = natslab("check", *common)
    assert stuck.returncode == 1 and "parked=2" in stuck.stdout and "waiting for #2" in stuck.stdout, stuck.stdout

    await publish_raw(lab.nc, "ann", 2, 200)
    await wait_until(lambda: account(lab, "ann") == (4, 1900), 30, "ann #2, then the parked #3 and #4, applied")
    assert rows(db, unresolved) == []
    applied = rows(db, "SELECT number FROM applied_events WHERE user_id = 'ann' ORDER BY rowid")
    assert applied == [(1,), (2,), (3,), (4,)]
    await wait_until(lambda: lab.counts.total("unparked") == 2, 10, "the listener counting the unparked events")
    healed = natslab("check", *common)
    assert healed.returncode == 0, healed.stdout + healed.stderr


async def test_events_not_yet_processed_are_pending_not_lost(make_lab) -> None:
    lab = await make_lab(listeners=1)
    assert lab.publisher is not None
    await lab.control("pause", "A")
    for cents in (100, 200, 300):
        await lab.publisher.record("deposit", "bob", cents)

    async def relayed() -> bool:
        assert lab.transactions is not None
        return await lab.transactions.count_unpublished() == 0

    await wait_until(relayed, 30, "the outbox relayed")
    common = ["--data-dir", str(lab.settings.data_dir), "--nats-url", lab.url]
    pending = natslab("check", "--json", *common)
    assert pending.returncode == 3, pending.stdout + pending.stderr
    report = json.loads(pending.stdout)
    assert report["verdict"] == "PENDING" and report["guarded"]["lost"] == 0 and report["guarded"]["pending"] == 3
    still = natslab("check", "--wait", "1", *common)
    assert still.returncode == 3 and "3 events still pending after 1 s" in still.stderr
    await lab.control("resume", "A")
    settled = natslab("check", "--wait", "30", *common)
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert settled.stdout.rstrip().endswith("| OK")


async def test_a_history_that_cannot_be_read_in_full_is_an_error_not_a_short_history(nc: NATS) -> None:
    await ensure_stream(nc)
    js = nc.jetstream()
    for number in range(1, 3001):
        await js.publish_async("account.deposit.amy", AccountEvent.new("deposit", "amy", 1, number).to_json())
    await js.publish_async_completed()
    assert len(await read_history(nc)) == 3000
    with pytest.raises(HistoryError, match="history incomplete: read up to stream seq"):
        await read_history(nc, timeout=0.0001)


def test_check_against_a_server_without_the_stream_says_so(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = natslab("check", "--data-dir", str(data), "--nats-url", nats_server.url)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stream ACCOUNT_EVENTS does not exist" in lines[0]
    assert not data.exists()


async def test_check_refuses_a_transactions_database_it_cannot_read(nc: NATS, nats_server: EmbeddedServer, tmp_path: Path) -> None:
    await ensure_stream(nc)
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "transactions.db")
    db.execute("CREATE TABLE transactions (id TEXT, amount REAL)")
    db.commit()
    db.close()
    before = (data / "transactions.db").read_bytes()
    result = natslab("check", "--data-dir", str(data), "--nats-url", nats_server.url)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "transactions.db: has another schema" in lines[0]
    assert (data / "transactions.db").read_bytes() == before


async def test_check_on_a_data_dir_without_the_groups_database_cannot_check(make_lab, tmp_path: Path) -> None:
    """Another data dir pointed at a lab's server: its acknowledged events were processed elsewhere."""
    lab = await make_lab(listeners=1)
    assert lab.publisher is not None
    await lab.publisher.record("deposit", "jim", 700)
    await wait_until(lambda: account(lab, "jim") == (1, 700), 30, "jim #1 applied")

    async def acknowledged() -> bool:
        return (await lab.consumer_info(GUARDED_GROUP)).ack_floor.stream_seq >= 1

    await wait_until(acknowledged, 10, "the group's ack floor past jim #1")
    other = tmp_path / "other"
    result = natslab("check", "--data-dir", str(other), "--nats-url", lab.url)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "accounts.db: missing, yet the guarded group has acknowledged events" in lines[0]
