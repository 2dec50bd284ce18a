"""Start-up: databases opened by many processes at once, and listeners that cannot start.

A lab starts its listeners together on a fresh data dir, while the dashboard's polls read the same
files; none of those opens may fail. A listener that cannot open its database must exit non-zero at
once and be shown as crashed with its reason, not hang.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.waits import LabError
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from publisher.transactions import SCHEMA as TRANSACTIONS_SCHEMA

HELPERS = Path(__file__).parent
WRITERS = 3
ROUNDS = 120
ROUND_INTERVAL_S = 0.06


def test_fresh_databases_open_from_several_processes_at_the_same_instant(tmp_path: Path) -> None:
    args = [str(tmp_path), str(ROUNDS), str(ROUND_INTERVAL_S)]
    roles = ["writer"] * WRITERS + ["reader"]
    helpers = [
        subprocess.Popen(
            [sys.executable, str(HELPERS / "open_race.py"), role, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        for role in roles
    ]
    try:
        # Every helper has imported what it needs; then all get the same start time.
        assert [helper.stdout.readline().strip() for helper in helpers] == ["ready"] * len(roles)
        t0 = repr(time.time() + 0.2)
        for helper in helpers:
            helper.stdin.write(f"{t0}\n")
            helper.stdin.close()
        outputs = [helper.stdout.read() for helper in helpers]  # to the end: each prints once, then exits
        for helper in helpers:
            helper.wait(timeout=30)
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
    assert [helper.returncode for helper in helpers] == [0] * len(roles), outputs
    errors = [error for output in outputs for error in json.loads(output)]
    assert errors == [], f"{len(errors)} of {ROUNDS * len(roles)} opens or reads failed:\n" + "\n".join(errors[:10])
    for round_ in range(ROUNDS):
        path = tmp_path / str(round_) / ("accounts.db" if round_ % 2 == 0 else "transactions.db")
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
        schema = ACCOUNTS_SCHEMA if round_ % 2 == 0 else TRANSACTIONS_SCHEMA
        assert (tables, version) == (set(schema.tables()), schema.version), path


async def test_a_listener_that_cannot_open_its_database_exits_at_once_with_the_reason(make_lab, settings) -> None:
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "accounts.db").write_bytes(b"this is not an SQLite database" * 100)
    lab = await make_lab(listeners=1)
    with pytest.raises(LabError) as failure:
        await wait_listeners_ready(lab, timeout=30)
    entry = lab.supervisor.get("A")
    assert entry.state == "crashed" and entry.exit_code == 1
    assert entry.reason is not None and entry.reason.startswith("accounts.db: file is not a database (in ")
    assert "listener A exited with code 1 before it was ready" in str(failure.value)
    assert entry.reason in str(failure.value)


@contextmanager
def port_that_refuses() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for the `with` block."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def test_a_listener_gives_up_on_an_unreachable_server(tmp_path: Path) -> None:
    with port_that_refuses() as port:
        result = subprocess.run(
            [sys.executable, "-m", "dashboard.commands", "listener", "--name", "A", "--data-dir", str(tmp_path),
             "--nats-url", f"nats://127.0.0.1:{port}", "--nats-timeout", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"natslab listener A: cannot reach NATS at nats://127.0.0.1:{port} (tried for 1 s)"
    ]


async def test_waiting_on_a_lab_whose_server_died_fails_at_once_with_the_cause(make_lab) -> None:
    lab = await make_lab(listeners=1)
    await wait_listeners_ready(lab)
    await lab.publisher.record("deposit", "jim", 7000)
    lab.server._process.kill()  # not through the lab: as if the server crashed
    lab.server._process.wait()
    with pytest.raises(LabError, match=r"the embedded nats-server \(pid \d+\) ended by itself with code -9; see "):
        await wait_drained(lab, timeout=60)
