"""A helper process for test_startup.py: open (or read) fresh databases at agreed instants.

    python open_race.py writer|reader DIR ROUNDS INTERVAL

Prints `ready` once imported, then reads T0 from stdin, so slow starts do not spread the helpers out.
Round i starts at T0 + i * INTERVAL (wall clock, shared by every helper process) on DIR/<i>/: a writer
opens that round's database the way the lab does (`AccountsDB.open` on even rounds,
`TransactionsDB.open` on odd ones) and closes it; a reader reads it read-only through the checker,
as the dashboard's polls do, again and again until the round ends. Prints one JSON line: the errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from dashboard.lab.snapshot import read_database, read_transactions
from listeners.accounts import ACCOUNTS_DB, AccountsDB
from publisher.transactions import TransactionsDB


def database(directory: Path, round_: int) -> Path:
    return directory / str(round_) / (ACCOUNTS_DB if round_ % 2 == 0 else "transactions.db")


async def writer(path: Path, round_: int) -> None:
    if round_ % 2 == 0:
        await (await AccountsDB.open(path)).close()
    else:
        await (await TransactionsDB.open(path)).close()


async def reader(path: Path, round_: int, until: float) -> None:
    while time.time() < until:
        if round_ % 2 == 0:
            await read_database(path)
        else:
            await read_transactions(path)


async def main(role: str, directory: Path, rounds: int, t0: float, interval: float) -> list[str]:
    errors: list[str] = []
    for round_ in range(rounds):
        start = t0 + round_ * interval
        await asyncio.sleep(max(0.0, start - time.time()))
        path = database(directory, round_)
        try:
            if role == "writer":
                await writer(path, round_)
            else:
                await reader(path, round_, start + interval * 0.8)
        except Exception as exc:
            errors.append(f"round {round_} {role}: {type(exc).__name__}: {exc}")
    return errors


if __name__ == "__main__":
    role, directory, rounds, interval = sys.argv[1:]
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())
    found = asyncio.run(main(role, Path(directory), int(rounds), t0, float(interval)))
    print(json.dumps(found), flush=True)
