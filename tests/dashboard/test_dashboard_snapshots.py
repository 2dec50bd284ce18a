"""SVG snapshots of the main screen in its key states, drawn from fixed fake states and a frozen clock,
at the size most terminals open at (80x24), a mid size (120x40) and a large one (160x48)."""

from __future__ import annotations

from collections.abc import Callable

from dashboard_fakes import (
    after_overtaking,
    cluster_after_a_node_kill,
    fresh_start,
    frozen_clock,
    mid_scenario,
    partitioned_failover,
    server_down,
)
from textual.pilot import Pilot

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp


def snapshot_app(
    settings: Settings, state: Callable[[NatslabApp], None], keys: tuple[str, ...] = ()
) -> tuple[NatslabApp, Callable]:
    app = NatslabApp(settings, autostart=False, clock=frozen_clock)

    async def run_before(pilot: Pilot) -> None:
        state(app)
        await pilot.pause()
        app.redraw()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return app, run_before


def test_fresh_start(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, fresh_start)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_after_the_overtaking_withdrawal(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, after_overtaking)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_after_the_overtaking_withdrawal_at_80x24(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, after_overtaking)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_a_scenario_step_by_step_at_80x24(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, mid_scenario)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_server_down(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, server_down)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_the_legend_under_question_mark(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, fresh_start, keys=("question_mark", "end"))
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_a_cluster_whose_leader_node_was_killed(snap_compare, settings: Settings) -> None:
    """The nodes pane (only with a cluster): n1 killed, the guarded consumer electing, the outbox waiting."""
    app, run_before = snapshot_app(settings, cluster_after_a_node_kill)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_a_cluster_at_80x24(snap_compare, settings: Settings) -> None:
    """The nodes pane narrow: no pid or port, short asset names, the node names and the selection kept."""
    app, run_before = snapshot_app(settings, cluster_after_a_node_kill)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_the_partitioned_group_failing_over(snap_compare, settings: Settings) -> None:
    """The partitioned group beside the others: P1 killed, its partition p2 failing over with 2 events
    waiting, the guard having acted once, and a third accounts column whose Jim is behind (on its way)."""
    app, run_before = snapshot_app(settings, partitioned_failover)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_the_partitioned_group_at_80x24(snap_compare, settings: Settings) -> None:
    app, run_before = snapshot_app(settings, partitioned_failover)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
