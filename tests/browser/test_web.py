"""`natslab web` used as a person would: in Chromium, and over the bare websocket.

The browser test runs what the lab as a service promises: `natslab up` hosts the lab, `natslab web`
serves it, and a browser tab and a terminal dashboard (Textual's pilot) attach to it together. A
kill from the page shows in the other dashboard; the lab's first scenario, overtaking-withdrawal,
opened from the picker (x, then Enter: step by step) and stepped through with Space, ends in the
page with the guarded balance it must: Jim at $10 after $70 + $40 - $100, and the other dashboard
followed the same run. The page is also resized, and a screenshot saved. Closing the tab ends its
dashboard process and leaves the lab running. The websocket test runs `natslab web` alone: it
starts its own lab, and stops it when it ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import pytest
from page import open_page, require_chromium
from served import NATSLAB, serve
from terminal_screen import Terminal
from ws_session import open_session

from dashboard.lab.client import ping
from dashboard.lab.host import lock_holder
from dashboard.lab.settings import Settings
from dashboard.lab.waits import wait_until
from dashboard.ui.app import NatslabApp

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


async def start_up(data_dir: Path) -> tuple[subprocess.Popen, str]:
    up = subprocess.Popen(
        [*NATSLAB, "up", "--data-dir", str(data_dir), "--ack-wait", "2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert up.stdout is not None
    url = (await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), STARTUP_S)).strip()
    assert url.startswith("nats://127.0.0.1:"), f"natslab up printed {url!r}"
    return up, url


@pytest.mark.timeout(240)
async def test_up_web_a_browser_tab_and_a_terminal_dashboard_run_on_one_lab(tmp_path: Path, artifacts: Path) -> None:
    chromium = require_chromium()
    data = tmp_path / "data"
    up, url = await start_up(data)
    try:
        async with serve(data, tmp_path / "web.log") as served:
            assert "starting a lab" not in served.log_text(), "web should attach to the lab of natslab up"
            terminal = NatslabApp(Settings(data_dir=data, attach=True))
            async with terminal.run_test(size=(120, 40)) as pilot:
                async with open_page(served.url, chromium, failure_screenshot=artifacts / "browser-failure.png") as page:
                    await wait_until_ready(page)
                    await page.wait_for_text(f"lab of natslab up (pid {up.pid})", 30)
                    columns, lines = page.screen.size
                    assert (columns, lines) != (80, 24), "the page should have fitted its terminal to the window"
                    await page.focus()
                    await page.wait_for_text(FOOTER, 30)
                    await wait_until(lambda: terminal.view.phase == "running", 30, "the terminal dashboard")

                    # A kill from the page shows in the terminal dashboard.
                    await page.press("1")
                    await page.press("k")
                    await wait_until(
                        lambda: terminal.view.listeners["A"].state == "killed", 15, "the kill to show elsewhere"
                    )
                    await page.wait_for_text(re.compile(r"│ 1 A +killed"), 15)

                    steps = await run_scenario_step_by_step(page)
                    assert steps > 0, "Enter in the picker should run the scenario step by step"
                    shown = await page.wait_for_text(JIM_ENDS_AT_10, STEP_S)
                    (artifacts / "browser-screen.txt").write_text(page.screen.text() + "\n")
                    shot = await page.screenshot(artifacts / "browser-overtaking-withdrawal.png")
                    print(f"\n{shown.group('user')} ends at $10 after {steps} steps; screenshot: {shot}")

                    # The terminal dashboard followed the same run, to the same balance.
                    user = shown.group("user")
                    scenario = terminal.view.scenario
                    assert scenario is not None and scenario.name == SCENARIO
                    await wait_until(lambda: terminal.view.scenario.finished, 15, "the other dashboard's lesson")
                    await wait_until(
                        lambda: (row := terminal.view.accounts["guarded"].get(user)) is not None
                        and (row.last_number, row.balance_cents) == (3, 1000), 15, "the other dashboard's account row",
                    )  # fmt: skip

                    # A smaller window: the page sends the new size, the app redraws, the row is still there.
                    narrower, _ = await page.resize_viewport(1000, 700)
                    assert narrower < columns, f"the terminal should have narrowed from {columns} columns"
                    await page.wait_for_text(drawn_at_width(narrower), 30)
                    await page.wait_for_text(JIM_ENDS_AT_10, 30)
                await served.wait_for_no_apps()  # the tab's dashboard ended with the tab
                assert await ping(url) is not None, "closing a tab must leave the lab running"
                await pilot.press("q")
                await wait_until(lambda: terminal.return_code is not None, 15, "the terminal dashboard to leave")
        assert await ping(url) is not None, "natslab web must not stop a lab it did not start"
        down = subprocess.run([*NATSLAB, "down", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
        up.wait()


@pytest.mark.timeout(180)
async def test_a_websocket_session_on_natslab_web_alone(tmp_path: Path, artifacts: Path) -> None:
    data = tmp_path / "data"
    async with serve(data, tmp_path / "web.log") as served:
        assert "starting a lab on" in served.log_text()
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
        holder = lock_holder(data)
        assert holder is not None and holder["command"] == "natslab up (for natslab web)"
        url = holder["url"]
    # natslab web ended, and the lab it started with it.
    assert await ping(url) is None
    assert lock_holder(data) is None
