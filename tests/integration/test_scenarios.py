"""Every failure scenario ends with a clean guarded verdict; the naive group's damage is where expected."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dashboard.lab.scenarios import SCENARIOS, run_scenario
from dashboard.lab.settings import Settings

EXPECTED_NAIVE_DAMAGE = {"crash-after-commit", "out-of-order", "naive-vs-guarded"}


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"slides"}))
async def test_scenario_keeps_the_guarded_database_right(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    captions: list[str] = []

    async def say(caption: str) -> None:
        captions.append(caption)

    settings = Settings(data_dir=tmp_path / "data", ack_wait_s=2.0)
    guarded, naive, report = await run_scenario(scenario, settings, say, random.Random(11))
    assert report.ok, report.problems
    assert report.guarded.clean
    assert guarded, "the scenario should have applied events"
    assert len(captions) >= 2
    if name in EXPECTED_NAIVE_DAMAGE:
        assert report.naive is not None and not report.naive.clean, report.verdict_line()
    if name == "poison":
        assert report.poison_in_stream == 9
    if name == "publisher-crash":
        assert report.stream_events == 2
        assert [(row.user_id, row.last_number, row.balance_cents) for row in guarded] == [("pat", 2, 5000)]
