"""u: the slow user form, and the status line saying who is slow."""

from __future__ import annotations

from conftest import wait_for
from dashboard_fakes import fresh_start, post_all, status
from textual.widgets import Input

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.messages import ListenerStatusReceived
from dashboard.ui.screens.slow_user_form import SlowUserForm, SlowUserRequest
from dashboard.ui.widgets.status_line import StatusLine


async def test_the_form_takes_a_user_and_whole_milliseconds_and_the_status_line_names_the_slow_user(
    settings: Settings,
) -> None:
    app = NatslabApp(settings, autostart=False)
    asked: list[SlowUserRequest | None] = []
    async with app.run_test(size=(160, 48)) as pilot:
        app.push_screen(SlowUserForm("jim"), asked.append)
        await wait_for(pilot, lambda: isinstance(app.focused, Input) and app.focused.id == "ms", 5, "the ms field")
        await pilot.press("end", *["backspace"] * 4, "1", ".", "5", "enter")
        assert asked == [] and "whole number of milliseconds" in str(app.screen.query_one("#publish-error").render())
        await pilot.press("backspace", "backspace", "5", "0", "0", "enter")
        await wait_for(pilot, lambda: asked != [], 5, "the form to close")
        assert asked == [SlowUserRequest("jim", 1500)]

        fresh_start(app)
        post_all(app, ListenerStatusReceived(status("A", 4101, slow_user=("jim", 1500))))
        await wait_for(
            pilot, lambda: "jim slow: 1.5 s/event (u)" in str(app.query_one(StatusLine).render()), 5, "the status line"
        )
        post_all(app, ListenerStatusReceived(status("A", 4101, slow_user=("jim", 0))))
        await wait_for(pilot, lambda: "slow:" not in str(app.query_one(StatusLine).render()), 5, "jim normal again")
