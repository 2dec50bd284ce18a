"""A small seeded chaos run: faults at random points, then the guarded database must be clean."""

from __future__ import annotations

import random
from pathlib import Path

from dashboard.lab.chaos import ChaosConfig, fault_plan, run_chaos
from dashboard.lab.settings import Settings


def test_fault_plan_is_seeded_and_complete() -> None:
    config = ChaosConfig(events=500, kills=7, pauses=3, server_restarts=2, seed=9)
    plan = fault_plan(config, random.Random(9))
    assert plan == fault_plan(config, random.Random(9))
    faults = [fault for faults in plan.values() for fault in faults]
    assert sorted(faults) == sorted(["kill"] * 7 + ["pause"] * 3 + ["server-restart"] * 2)
    assert all(0 <= index < 500 for index in plan)


async def test_small_chaos_run_loses_nothing(tmp_path: Path) -> None:
    config = ChaosConfig(events=300, users=4, kills=3, pauses=1, server_restarts=1, seed=5, listeners=2)
    lines: list[str] = []
    result = await run_chaos(config, Settings(data_dir=tmp_path / "data", ack_wait_s=1.0), lines.append)
    assert result.ok, result.report.problems
    assert result.report.stream_events == 300
    assert len(result.faults) == 5
    assert "lost=0 duplicated=0 out_of_order=0" in result.summary()
    assert result.redeliveries > 0, "killing listeners with events in flight must cause redeliveries"
    assert lines and lines[-1].endswith("draining")
