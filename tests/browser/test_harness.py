"""The dashboard served by textual-serve, used as a person would: in Chromium, and over the bare websocket.

Each test serves the real dashboard (its own embedded NATS server and listeners in a temporary data
dir), opens the lab's first scenario, overtaking-withdrawal, from the picker (x, then Enter: step by
step), steps through it with Space and waits for the account pane to show the guarded balance the
scenario ends with: Jim at $10 after $70 + $40 - $100. The browser test also resizes the page and
saves a screenshot. Closing the client must end the app and its lab by itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from page import open_page, require_chromium
from served import dashboard_command, serve
from terminal_screen import Terminal
from ws_session import open_session

STARTUP_S = 60.0  # the app, its NATS server and three listeners on a loaded 2-core machine
STEP_S = 60.0  # one scenario step: up to four ack waits of 2 s, and the listeners' restarts
MAX_STEPS = 20  # overtaking-withdrawal has 8 captions; more than this means Space is not being taken
SCENARIO = "overtaking-withdrawal"
# The account row, `│ jim     3     $10    2    $110    3     $10`: name, then Last and Balance for the
# guarded database, the naive one and the checker's expectation. Guarded and expected must agree.
JIM_ENDS_AT_10 = re.compile(r"^│ (?P<user>jim\d*) +3 +\$10 +\S+ +\S+ +3 +\$10 ", re.MULTILINE)
# The footer of keys, shown while the app has focus.
FOOTER = re.compile(r"^d deposit +w withdraw ", re.MULTILINE)


def drawn_at_width(columns: int) -> re.Pattern[str]:
    """A line ending with a pane's corner in the last column: the app has drawn its panes at this width."""
    return re.compile(rf"^.{{{columns - 1}}}╯$", re.MULTILINE)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots and screen texts go: $NATSLAB_ARTIFACTS if set (CI keeps it), else tmp_path."""
    folder = Path(os.environ.get("NATSLAB_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def run_scenario_step_by_step(terminal: Terminal) -> int:
    """From the ready dashboard: x, Enter on the first scenario, Space at each step until it finishes.

    Returns the number of steps taken. Each Space is pressed only once the step it answers is shown
    waiting, so no key lands while a step runs.
    """
    await terminal.press("x")
    await terminal.wait_for_text(re.compile(rf"Run a scenario on this lab(?s:.*){SCENARIO}"), 30)
    await terminal.press("Enter")
    await terminal.wait_for_text(f"Scenario {SCENARIO}", 30)
    finished = f"{SCENARIO} finished"
    for step in range(1, MAX_STEPS + 1):
        # The step's caption (`▶  3 ...`, perhaps wrapped) and under it the hint that Space goes on.
        waiting = rf"▶ +{step} (?s:.*?)Space goes on"
        shown = await terminal.wait_for_text(re.compile(rf"(?P<finished>{finished})|{waiting}"), STEP_S)
        if shown.group("finished"):
            return step - 1
        await terminal.press("Space")
    raise AssertionError(f"{SCENARIO} did not finish within {MAX_STEPS} steps")


async def wait_until_ready(terminal: Terminal) -> None:
    await terminal.wait_for_text("Account database", STARTUP_S)
    await terminal.wait_for_text("Queue groups and their listeners", STARTUP_S)
    await terminal.wait_for_text("Ready. d deposits", STARTUP_S)  # the lab has started: keys act on it


@pytest.mark.timeout(180)
async def test_the_browser_runs_a_scenario_on_the_served_dashboard(tmp_path: Path, artifacts: Path) -> None:
    chromium = require_chromium()
    async with serve(dashboard_command(tmp_path / "data"), tmp_path / "textual-serve.log") as served:
        async with open_page(served.url, chromium, failure_screenshot=artifacts / "browser-failure.png") as page:
            await wait_until_ready(page)
            columns, lines = page.screen.size
            assert (columns, lines) != (80, 24), "the page should have fitted its terminal to the 1400x900 window"
            await page.focus()
            await page.wait_for_text(FOOTER, 30)

            steps = await run_scenario_step_by_step(page)
            assert steps > 0, "Enter in the picker should run the scenario step by step"
            shown = await page.wait_for_text(JIM_ENDS_AT_10, STEP_S)
            (artifacts / "browser-screen.txt").write_text(page.screen.text() + "\n")
            shot = await page.screenshot(artifacts / "browser-overtaking-withdrawal.png")
            print(f"\n{shown.group('user')} ends at $10 after {steps} steps; screenshot: {shot}")

            # A smaller window: the page sends the new size, the app redraws, the row is still there.
            narrower, _ = await page.resize_viewport(1000, 700)
            assert narrower < columns, f"the terminal should have narrowed from {columns} columns"
            await page.wait_for_text(drawn_at_width(narrower), 30)
            await page.wait_for_text(JIM_ENDS_AT_10, 30)
            print(f"terminal {columns}x{lines}, then {narrower} columns; requests aborted: {page.blocked}")
        await served.wait_for_no_apps()


@pytest.mark.timeout(180)
async def test_a_websocket_session_runs_a_scenario_on_the_served_dashboard(tmp_path: Path, artifacts: Path) -> None:
    async with serve(dashboard_command(tmp_path / "data"), tmp_path / "textual-serve.log") as served:
        async with open_session(served.url, columns=150, lines=45) as session:
            await wait_until_ready(session)
            await session.focus()
            await session.wait_for_text(FOOTER, 30)
            steps = await run_scenario_step_by_step(session)
            assert steps > 0, "Enter in the picker should run the scenario step by step"
            shown = await session.wait_for_text(JIM_ENDS_AT_10, STEP_S)
            (artifacts / "ws-screen.txt").write_text(session.screen.text() + "\n")
            print(f"\n{shown.group('user')} ends at $10 after {steps} steps; screen: {artifacts / 'ws-screen.txt'}")

            await session.resize(120, 40)
            await session.wait_for_text(drawn_at_width(120), 30)
            await session.wait_for_text(JIM_ENDS_AT_10, 30)
        await served.wait_for_no_apps()
