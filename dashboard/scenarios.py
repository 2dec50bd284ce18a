"""Scenarios: scripted failures on a running lab, narrated one caption per step.

A scenario is an async function of a `Lab` and a `say` callback. The CLI runs it on a fresh embedded
server in a temporary data dir and prints the captions; the dashboard runs the same function on its own
lab and shows the captions on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.checker import format_report
from dashboard.lab import Lab, wait_until
from dashboard.settings import Settings, UsageError
from listeners.accounts import AccountRow, Mode
from publisher.events import format_cents

Say = Callable[[str], Awaitable[None]]

# A listener told to be this slow holds what it fetched until it is killed or told `normal`.
HOLD_MS = 600_000


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Lab, Say], Awaitable[None]]
    listeners: int = 2
    naive: int = 1


def _alive(lab: Lab, mode: Mode) -> list[str]:
    assert lab.supervisor is not None
    return [entry.name for entry in lab.supervisor.members(mode) if entry.alive]


async def wait_listeners_ready(lab: Lab, timeout: float = 20.0) -> None:
    """Every live listener has reported a status from its current process and is fetching."""
    assert lab.supervisor is not None

    def ready() -> bool:
        for entry in lab.supervisor.listeners.values():  # type: ignore[union-attr]
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


async def slides(lab: Lab, say: Say) -> None:
    """The seed's example: Jim's withdrawal overtakes his second deposit."""
    assert lab.publisher is not None and lab.supervisor is not None
    ack_wait = lab.settings.ack_wait_s
    await say("Two guarded listeners share the queue group account-service; a naive one reads account-service-naive.")
    await wait_listeners_ready(lab)

    await say("Publisher: Mary deposits $40 (Mary #1), Jim deposits $70 (Jim #1).")
    await lab.publisher.record("deposit", "mary", 4000)
    await lab.publisher.record("deposit", "jim", 7000)
    for mode in ("guarded", "naive"):
        await wait_until(lambda m=mode: account_is(lab, m, "jim", 1), 20, f"Jim #1 in the {mode} database")
        await wait_until(lambda m=mode: account_is(lab, m, "mary", 1), 20, f"Mary #1 in the {mode} database")

    await say("Every listener slows down, so whoever takes Jim's next deposit sits on it.")
    for name in _alive(lab, "guarded") + _alive(lab, "naive"):
        await lab.send_control(name, f"slow {HOLD_MS}")
    await lab.publisher.record("deposit", "jim", 4000)
    await wait_until(lambda: holder_of(lab, "guarded", "jim", 2) is not None, 20, "a guarded listener to take Jim #2")
    await wait_until(lambda: holder_of(lab, "naive", "jim", 2) is not None, 20, "the naive listener to take Jim #2")
    slow_guarded = holder_of(lab, "guarded", "jim", 2)
    slow_naive = holder_of(lab, "naive", "jim", 2)
    assert slow_guarded is not None and slow_naive is not None

    await say(f"Listener {slow_guarded} holds Jim's +$40 (#2) and dies before acknowledging it (SIGKILL); so does {slow_naive}.")
    lab.supervisor.kill(slow_guarded)
    lab.supervisor.kill(slow_naive)
    for name in _alive(lab, "guarded"):
        await lab.send_control(name, "normal")
    lab.supervisor.restart(slow_naive)
    await wait_listeners_ready(lab)

    await say("Jim withdraws $100 (Jim #3). It reaches the survivors before the deposit it depends on.")
    await lab.publisher.record("withdraw", "jim", 10000)

    def guarded_deferred() -> bool:
        return any((lab.statuses.get(n) or {}).get("counters", {}).get("deferred", 0) > 0 for n in _alive(lab, "guarded"))

    await wait_until(guarded_deferred, 20, "a guarded listener to defer Jim #3")
    await wait_until(lambda: account_is(lab, "naive", "jim", 3), 20, "the naive listener to process Jim #3")
    await say("Guarded: #3 is early (last processed is 1), so it is not acknowledged and comes back later.")
    await say("Naive: #3 is applied as it arrives; $100 is more than Jim's $70, so the withdrawal is rejected.")

    await say(f"After the ack wait ({ack_wait:g} s) NATS redelivers #2; the guard applies #2, then #3.")
    await lab.wait_drained(timeout=ack_wait * 4 + 30)
    lab.supervisor.restart(slow_guarded)
    await wait_listeners_ready(lab)
    await say("Drained: every event is processed. Guarded Jim ends at $10; naive Jim kept the $100.")


SCENARIOS: dict[str, Scenario] = {
    "slides": Scenario("slides", "the seed's example: a withdrawal overtakes a deposit held by a dying listener", slides),
}


def table_lines(title: str, rows: list[AccountRow]) -> list[str]:
    lines = [title, f"  {'Name':<12} {'Last number':>11} {'Balance':>12}"]
    lines += [f"  {row.user_id:<12} {row.last_number:>11} {format_cents(row.balance_cents):>12}" for row in rows]
    return lines


async def run_scenario(
    scenario: Scenario, settings: Settings, say: Say
) -> tuple[list[AccountRow], list[AccountRow], Any]:
    lab = Lab(settings)
    await lab.start(listeners=scenario.listeners, naive=scenario.naive)
    try:
        await scenario.run(lab, say)
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
    steps: list[str] = []

    async def say(caption: str) -> None:
        steps.append(caption)
        if not args.json:
            print(f"[{len(steps)}] {caption}", flush=True)

    try:
        guarded, naive, report = asyncio.run(run_scenario(scenario, settings, say))
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
