"""The `natslab` commands as a user runs them: real processes, real server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.probes import wait_drained
from dashboard.lab.scenarios import SCENARIOS
from dashboard.lab.waits import wait_until
from publisher.transactions import SCHEMA

NATSLAB = [sys.executable, "-m", "dashboard.commands"]


def natslab(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NATSLAB, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["transfer", "jim", "70"], "kind must be deposit or withdraw"),
        (["deposit", "jim smith", "70"], "user"),
        (["deposit", "x" * 65, "70"], "user"),
        (["deposit", "jim", "0"], "greater than zero"),
        (["withdraw", "jim", "-5"], "amount"),
        (["deposit", "jim", "7O"], "amount"),
        (["deposit", "jim", "1.234"], "amount"),
        (["deposit", "jim"], "usage"),
    ],
)
def test_publish_refuses_bad_input_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    result = natslab("publish", *args, "--data-dir", str(tmp_path), "--nats-url", "nats://127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "transactions.db").exists()


def test_publish_refuses_a_transactions_db_of_another_schema_and_leaves_it_as_it_was(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with closing(sqlite3.connect(data / "transactions.db")) as db:
        db.executescript(SCHEMA.sql)
        db.execute("PRAGMA user_version = 2")
    before = {path.name: path.read_bytes() for path in data.iterdir()}
    result = natslab("publish", "deposit", "jim", "7", "--data-dir", str(data), "--nats-url", nats_server.url)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"natslab: transactions.db: schema version 2; this natslab reads version 1 (in {data})"
    ]
    assert result.stdout == ""
    assert {path.name: path.read_bytes() for path in data.iterdir()} == before


def test_publish_to_a_server_down_from_the_start_records_nothing_and_says_so(tmp_path: Path) -> None:
    result = natslab("publish", "deposit", "jim", "7", "--data-dir", str(tmp_path), "--nats-url", "nats://127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["natslab: cannot reach NATS at nats://127.0.0.1:1 (tried for 5 s)"]
    assert not (tmp_path / "transactions.db").exists()


def test_server_prints_its_url_first(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*NATSLAB, "server", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("nats://127.0.0.1:")
        assert (tmp_path / "nats.url").read_text().strip() == first
        result = natslab("publish", "deposit", "jim", "70.50", "--data-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("jim #1 deposit $70.50 id=")
        assert "stream seq 1" in result.stdout
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
    assert not (tmp_path / "nats.url").exists()


async def test_two_publisher_processes_get_distinct_consecutive_numbers(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    args = [*NATSLAB, "publish", "--random", "150", "--users", "1", "--data-dir", str(tmp_path), "--nats-url", nats_server.url]
    processes = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            assert "0 left in the outbox" in out
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    db = sqlite3.connect(tmp_path / "transactions.db")
    numbers = [row[0] for row in db.execute("SELECT number FROM transactions WHERE user_id = 'user1' ORDER BY number")]
    unpublished = db.execute("SELECT COUNT(*) FROM transactions WHERE published_at IS NULL").fetchone()[0]
    seqs = {row[0] for row in db.execute("SELECT stream_seq FROM transactions")}
    db.close()
    assert numbers == list(range(1, 301))
    assert unpublished == 0
    assert len(seqs) == 300


def test_scenario_slides_runs_the_overtaking_withdrawal_to_the_lectures_balances() -> None:
    # `slides`, the lecture's name for the story, still runs it, under its own name.
    result = natslab("scenario", "slides", "--ack-wait", "3", "--json", timeout=150)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["scenario"] == "overtaking-withdrawal"
    assert data["lesson"] == SCENARIOS["overtaking-withdrawal"].lesson
    guarded = {row["name"]: (row["lastNumber"], row["balanceCents"]) for row in data["guarded"]}
    naive = {row["name"]: (row["lastNumber"], row["balanceCents"]) for row in data["naive"]}
    assert guarded == {"jim": (3, 1000), "mary": (1, 4000)}
    assert naive["jim"] != (3, 1000), "the naive group should have been broken by the same faults"
    assert data["check"]["ok"] is True
    assert len(data["steps"]) >= 5


def test_a_partitioned_scenario_shows_and_checks_the_partitioned_database_and_its_own_figures() -> None:
    result = natslab("scenario", "hot-partition", "--ack-wait", "2", "--json", timeout=150)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["partitioned"] == data["guarded"] and len(data["partitioned"]) == 7
    partitioned = data["check"]["partitioned"]
    assert data["check"]["ok"] is True and partitioned["lost"] == partitioned["pending"] == partitioned["wrong_balance"] == 0
    # The lesson, then what this run measured.
    assert data["lesson"].startswith(SCENARIOS["hot-partition"].lesson + " Here Hot's partition-mates waited ")


def test_scenario_list_and_unknown_name() -> None:
    listed = natslab("scenario", "--list")
    assert listed.returncode == 0 and listed.stdout.startswith("overtaking-withdrawal  ")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(SCENARIOS)
    unknown = natslab("scenario", "nope")
    assert unknown.returncode == 2 and "unknown scenario" in unknown.stderr and "(or slides)" in unknown.stderr


def test_a_scenario_prints_its_steps_and_ends_with_what_it_showed() -> None:
    result = natslab("scenario", "out-of-order", "--ack-wait", "2", "--sync", "always", "--seed", "3", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "natslab scenario out-of-order: ack wait 2 s, sync always"
    assert lines[1].startswith("[1] ") and lines[2].startswith("[2] ")
    assert lines[-1] == f"What this showed: {SCENARIOS['out-of-order'].lesson}"


async def test_check_exit_codes(make_lab) -> None:
    lab = await make_lab(listeners=1)
    await lab.publisher.record("deposit", "jim", 7000)
    await wait_drained(lab, timeout=30)
    common = ["--data-dir", str(lab.settings.data_dir), "--nats-url", lab.url]
    ok = natslab("check", "--json", *common)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    db = sqlite3.connect(lab.settings.data_dir / "accounts.db")
    db.execute("UPDATE accounts SET balance_cents = balance_cents + 1")
    db.commit()
    db.close()
    broken = natslab("check", *common)
    assert broken.returncode == 1
    assert "FAILED" in broken.stdout and "jim" in broken.stdout


async def test_publish_gives_up_when_nats_goes_away_and_keeps_the_rest_in_the_outbox(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    args = [*NATSLAB, "publish", "--random", "100000", "--users", "3", "--data-dir", str(tmp_path),
            "--nats-url", nats_server.url, "--nats-timeout", "2"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await wait_until(lambda: published_rows(tmp_path / "transactions.db") >= 200, 60, "the first events published")
        await nats_server.stop()
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"natslab publish: NATS at {nats_server.url} unreachable for 2 s; gave up after recording ")
    db = sqlite3.connect(tmp_path / "transactions.db")
    recorded, unpublished = db.execute("SELECT COUNT(*), COUNT(*) - COUNT(published_at) FROM transactions").fetchone()
    db.close()
    assert f"recording {recorded} of 100000 events. {unpublished} wait in the outbox" in last
    assert 0 < unpublished and recorded < 100_000 and out == ""


def published_rows(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM transactions WHERE published_at IS NOT NULL").fetchone()[0]
    except sqlite3.OperationalError:  # created, schema not written yet
        return 0
    finally:
        db.close()
