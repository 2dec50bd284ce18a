"""u: the slow user form, and the status line saying who is slow."""

from __future__ import annotations

from conftest import wait_for
from dashboard_fakes import fresh_start, post_all, status
from textual.widgets import Input, Label, Static

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.messages import ListenerStatusReceived
from dashboard.ui.screens.publish_form import PublishForm
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


async def test_the_forms_say_where_the_cursor_starts_and_no_label_is_cut(settings: Settings) -> None:
    """The forms are 50 columns wide inside: a label longer than that was cut mid-word; the hint wraps."""
    app = NatslabApp(settings, autostart=False)
    async with app.run_test(size=(160, 48)) as pilot:
        for form, hint in (
            (PublishForm("deposit", "jim"), "The cursor starts in Amount (Tab: User)."),
            (PublishForm("deposit"), "The cursor starts in User."),
            (SlowUserForm("jim"), "The cursor starts in Milliseconds (Tab: User). Milliseconds: how long"),
            (SlowUserForm(), "0 = back to normal"),
        ):
            app.push_screen(form)
            await pilot.pause()
            form_box = form.query_one("#publish-form")
            for label in form.query(Label):
                assert label.region.right <= form_box.content_region.right, str(label.render())
            assert hint in " ".join(str(form.query_one("#publish-hint", Static).render()).split())
            form.dismiss(None)
            await pilot.pause()
