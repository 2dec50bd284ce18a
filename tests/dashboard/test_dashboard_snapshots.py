"""SVG snapshots of the main screen in its key states, drawn from fixed fake states and a frozen clock."""

from __future__ import annotations

from collections.abc import Callable

from dashboard_fakes import after_slides, fresh_start, frozen_clock, server_down
from textual.pilot import Pilot

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp


def snapshot_app(settings: Settings, state: Callable[[NatslabApp], None]) -> tuple[NatslabApp, Callable]:
    app = NatslabApp(settings, autostart=False, clock=frozen_clock)

    async def run_before(pilot: Pilot) -> None:
        state(app)
        await pilot.pause()
        app.redraw()
        await pilot.pause()

    return app, run_before


def test_fresh_start(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, fresh_start)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_after_the_seeds_scenario(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, after_slides)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_server_down(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, server_down)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_after_the_seeds_scenario_at_80x24(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, after_slides)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
