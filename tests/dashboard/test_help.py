"""`?` lists every key the footer shows, each with what it does."""

from __future__ import annotations

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.screens.help import HelpScreen


async def test_every_key_on_the_help_screen_is_explained(settings: Settings) -> None:
    app = NatslabApp(settings, autostart=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = [key for key, _, _ in app.screen.rows]
        assert keys == ["d", "w", "1-9", "k", "p", "r", "c", "s", "a", "n", "N K P L R", "b", "t", "x", "␣", "l", "h", "u", "?", "q"]
        assert [key for key, _, explanation in app.screen.rows if not explanation] == []
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
