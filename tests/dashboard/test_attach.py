"""Dashboards attached to a lab another process hosts: the keys act on that lab, two dashboards see
the same state, quitting leaves the lab running, and a lab that goes away is said so."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from conftest import wait_for

from dashboard.commands.down import down
from dashboard.lab.client import ping
from dashboard.lab.host import Hosted, open_lab
from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.widgets.caption import CaptionBar
from dashboard.ui.widgets.status_line import StatusLine

SIZE = (120, 40)


def attached(app: NatslabApp) -> bool:
    return app.view.phase == "running" and app.view.listeners.keys() >= {"A", "B", "N1"}


async def test_two_attached_dashboards_act_on_one_lab_and_leave_it_running(hosted: Hosted, settings: Settings) -> None:
    first, second = NatslabApp(settings), NatslabApp(settings)
    async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
        await wait_for(one, lambda: attached(first), 20, "the first dashboard to attach")
        await wait_for(two, lambda: attached(second), 20, "the second dashboard to attach")
        assert first.driver.hosted is None and first.lab is None  # attached, not started here
        assert first.view.host == f"the test (pid {os.getpid()})"
        await wait_for(
            one, lambda: "lab of the test (pid" in str(first.query_one(StatusLine).render()), 5, "the status line"
        )

        await one.press("1", "k")  # A is the first card
        await wait_for(two, lambda: second.view.listeners["A"].state == "killed", 10, "the other dashboard to see A killed")
        assert hosted.lab.supervisor is not None and not hosted.lab.supervisor.listeners["A"].alive
        await wait_for(two, lambda: "A killed (SIGKILL)" in second.view.caption, 5, "the other caption to say so")

        await two.press("r")  # the second dashboard's selection is A too: restart it from there
        await wait_for(one, lambda: first.view.listeners["A"].state == "running", 10, "the first to see A again")

        await one.press("q")
        await wait_for(one, lambda: first.return_code is not None, 10, "the first dashboard to leave")
        assert first.return_code == 0
        assert await ping(hosted.lab.url) is not None  # the lab goes on
        assert hosted.lab.supervisor.listeners["A"].alive
        await two.press("q")
        await wait_for(two, lambda: second.return_code is not None, 10, "the second dashboard to leave")


async def test_an_attached_dashboard_says_when_its_lab_stops_and_attaches_to_the_next(settings: Settings) -> None:
    url, hosted = await open_lab(settings, "the first host")
    assert hosted is not None
    app = NatslabApp(settings)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), 20, "the dashboard to attach")
            await pilot.press("a")  # a listener C that the next lab will not have
            await wait_for(pilot, lambda: "C" in app.view.listeners, 10, "C to be added")
            await hosted.stop("the first host stopped")
            await wait_for(pilot, lambda: app.view.phase == "lost", 10, "the dashboard to notice")
            await wait_for(
                pilot, lambda: "The lab stopped: the first host stopped" in str(app.query_one(CaptionBar).render()),
                5, "the caption to say so",
            )  # fmt: skip
            assert app.view.caption_kind == "warning"
            await wait_for(
                pilot, lambda: "lab stopped, waiting" in str(app.query_one(StatusLine).render()), 5, "the status line"
            )
            await pilot.press("k")  # no lab to act on: said, nothing raised
            url, hosted = await open_lab(settings, "the next host")
            assert hosted is not None
            await wait_for(
                pilot, lambda: app.view.phase == "running" and app.view.host is not None and "the next host" in app.view.host,
                30, "the dashboard to attach to the next lab",
            )  # fmt: skip
            assert "C" not in app.view.listeners  # the last lab's listener is not shown as this one's
            await pilot.press("q")
            await wait_for(pilot, lambda: app.return_code is not None, 10, "the dashboard to leave")
        assert await ping(url) is not None
    finally:
        await hosted.stop("the test ended")


async def test_natslab_down_stops_the_lab_a_dashboard_started_and_the_dashboard_with_it(settings: Settings) -> None:
    app = NatslabApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: attached(app), 30, "the dashboard to start its lab")
        assert app.driver.hosted is not None and app.view.host is None
        url = app.driver.hosted.lab.url
        assert await down(settings, 30) == 0
        await wait_for(pilot, lambda: app.return_code is not None, 20, "the dashboard to stop with its lab")
    assert app.return_code == 0
    assert await ping(url) is None


async def test_a_host_killed_outright_is_noticed_by_its_server_going_and_its_lock(settings: Settings) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "dashboard.commands", "up", "--data-dir", str(settings.data_dir), "--naive", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        url = (await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), 60)).strip()
        assert url.startswith("nats://")
        app = NatslabApp(settings)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.view.phase == "running", 20, "the dashboard to attach")
            up.kill()  # SIGKILL: no word to the dashboards; its server and listeners die with it
            up.wait()
            await wait_for(pilot, lambda: app.view.phase == "lost", 20, "the dashboard to notice")
            assert f"its host (natslab up, pid {up.pid}) ended without stopping it" in app.view.caption
            await pilot.press("q")
            await wait_for(pilot, lambda: app.return_code is not None, 10, "the dashboard to leave")
    finally:
        if up.poll() is None:
            up.kill()
        up.wait()
