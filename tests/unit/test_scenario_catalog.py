"""The scenario catalogue as a newcomer meets it: the first story, names, one-line summaries,
lessons, and the lecture's old name."""

from __future__ import annotations

import re

import pytest

from dashboard.lab.scenarios import ALIASES, SCENARIOS, SUMMARY_WIDTH, find_scenario


def test_the_first_scenario_teaches_the_overtaking_withdrawal() -> None:
    assert next(iter(SCENARIOS)) == "overtaking-withdrawal"


def test_the_lectures_name_still_finds_the_story() -> None:
    assert find_scenario("slides") is SCENARIOS["overtaking-withdrawal"]
    assert find_scenario("overtaking-withdrawal") is SCENARIOS["overtaking-withdrawal"]
    assert find_scenario("nope") is None
    # An alias never hides a scenario's own name, and always leads somewhere.
    assert not set(ALIASES) & set(SCENARIOS)
    assert all(target in SCENARIOS for target in ALIASES.values())


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_has_a_one_line_summary_and_a_lesson(name: str) -> None:
    scenario = SCENARIOS[name]
    assert scenario.name == name and re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
    assert 0 < len(scenario.summary) <= SUMMARY_WIDTH and "\n" not in scenario.summary
    # Words the lecture used and a newcomer never heard.
    for word in ("slides", "seed"):
        assert word not in scenario.summary.lower() and word not in scenario.lesson.lower()
    lesson = scenario.lesson.strip()
    sentences = [part for part in re.split(r"(?<=[.!?])\s+", lesson) if part]
    assert lesson.endswith(".") and 1 <= len(sentences) <= 2, lesson
    assert lesson != scenario.summary


def test_a_run_that_measured_ends_the_lesson_with_its_own_figures() -> None:
    scenario = SCENARIOS["hot-partition"]
    assert scenario.lesson_of(None) == scenario.lesson
    figures = "Here Hot's partition-mates waited 3.1 s in the partitioned group and 0.2 s in the guarded group."
    assert scenario.lesson_of(figures) == f"{scenario.lesson} {figures}"


def test_the_partitioned_groups_scenarios_start_it_with_a_standby_and_the_others_do_not() -> None:
    partitioned = {name: scenario.partitioned for name, scenario in SCENARIOS.items() if scenario.partitioned}
    assert set(partitioned) == {"partitioned-vs-guarded", "hot-partition", "owner-dies"}
    assert min(partitioned.values()) >= 2  # an owner dies only where another listener stands by
