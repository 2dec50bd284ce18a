"""Pilot tests: the dashboard driven by its keys, against a real embedded server and listener processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shown_text, wait_for
from dashboard_fakes import JIM_AND_MARY, stored
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import DataTable

from dashboard.lab.history import StoredEvent, parse_stored
from dashboard.lab.probes import HOLD_MS, holder_of
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError, wait_until
from dashboard.ui.app import NatslabApp
from dashboard.ui.screens.history import HistoryScreen
from dashboard.ui.screens.publish_form import PublishForm
from dashboard.ui.screens.scenario_log import ScenarioLogScreen
from dashboard.ui.screens.scenario_picker import ScenarioPicker
from dashboard.ui.widgets.accounts import AccountLines
from dashboard.ui.widgets.caption import CaptionBar
from dashboard.ui.widgets.listener_card import ListenerCard
from dashboard.ui.widgets.status_line import StatusLine
from dashboard.ui.widgets.timeline import DeliveryLines

SIZE = (120, 40)


def listeners_ready(app: NatslabApp) -> bool:
    """The lab runs and every live listener has reported from its current process."""
    lab = app.lab
    if app.view.phase != "running" or lab is None or lab.supervisor is None:
        return False
    return all(
        (status := lab.statuses.get(entry.name)) is not None and status.pid == entry.pid and status.state == "running"
        for entry in lab.supervisor.listeners.values()
        if entry.alive
    )


async def publish_with_keys(pilot: Pilot, app: NatslabApp, kind_key: str, amount: str) -> None:
    """`d` or `w`, then the amount (the form remembers the user, jim by default), then Enter."""
    await pilot.press(kind_key)
    await wait_for(pilot, lambda: form_ready(app, "amount"), 5, "the publish form")
    await pilot.press(*amount, "enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, PublishForm), 5, "the form to close")


def form_ready(app: NatslabApp, field: str) -> bool:
    """The publish form is up and its `field` has the focus, so keys go there."""
    return isinstance(app.screen, PublishForm) and app.focused is not None and app.focused.id == field


def deliveries_of(app: NatslabApp, stream_seq: int) -> list[tuple[str, int, str]]:
    return [(e.listener, e.delivery_count, e.outcome) for e in app.view.timeline if e.stream_seq == stream_seq]


def account(app: NatslabApp, mode: str, user: str) -> tuple[int, int] | None:
    row = app.view.accounts[mode].get(user)
    return (row.last_number, row.balance_cents) if row is not None else None


def card(app: NatslabApp, name: str) -> ListenerCard:
    return next(card for card in app.query(ListenerCard) if card.listener_name == name)


async def quit_app(pilot: Pilot, app: NatslabApp) -> None:
    await pilot.press("q")
    await wait_for(pilot, lambda: app.return_code is not None, 20, "the dashboard to stop the lab and exit")


async def hold_next_event(app: NatslabApp, pilot: Pilot, names: tuple[str, ...]) -> str:
    """Slow every guarded listener down so whoever fetches Jim's deposit sits on it; returns who holds it."""
    assert app.lab is not None
    for name in names:
        await app.lab.control("slow", name, slow_ms=HOLD_MS)
    await wait_for(pilot, lambda: all(app.view.listeners[n].slow_ms for n in names), 5, "the listeners to slow down")
    await publish_with_keys(pilot, app, "d", "40")
    await wait_for(pilot, lambda: holder_of(app.lab, "guarded", "jim", 1) is not None, 10, "a listener to take Jim #1")
    holder = holder_of(app.lab, "guarded", "jim", 1)
    assert holder is not None
    return holder


async def test_publishing_with_the_keys_changes_the_account_pane(settings: Settings) -> None:
    settings.naive, settings.partitioned = 1, 2  # a column for each group
    app = NatslabApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        accounts = app.query_one(AccountLines)
        assert "jim" not in accounts.shown_text()

        await publish_with_keys(pilot, app, "d", "70")
        await publish_with_keys(pilot, app, "w", "25.50")
        await wait_for(
            pilot,
            lambda: account(app, "guarded", "jim") == (2, 4450) and account(app, "naive", "jim") == (2, 4450),
            20,
            "both databases to hold Jim's two events",
        )

        def jim_row() -> list[str]:
            return next(
                (line.split() for line in accounts.shown_text().splitlines() if line.split()[:1] == ["jim"]), []
            )

        # Name, then Last and Balance for guarded, naive, partitioned and what the checker expects.
        await wait_for(
            pilot,
            lambda: jim_row() == ["jim", "2", "$44.50", "2", "$44.50", "2", "$44.50", "2", "$44.50"],
            10,
            "the account pane to show Jim's row",
        )
        await quit_app(pilot, app)


async def test_killing_a_listener_redelivers_its_event_to_the_other_once(settings: Settings) -> None:
    settings.naive = settings.partitioned = 0  # the guarded group alone: every delivery of Jim #1 is A's or B's
    app = NatslabApp(settings)
    notes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        holder = await hold_next_event(app, pilot, ("A", "B"))
        other = "B" if holder == "A" else "A"

        await pilot.press("1" if holder == "A" else "2", "k")
        await wait_for(pilot, lambda: app.view.listeners[holder].state == "killed", 5, f"{holder} to be killed")

        def card_shows_killed() -> bool:
            return shown_text(card(app, holder)).split()[1:3] == [holder, "killed"]

        await wait_for(pilot, card_shows_killed, 2, f"the card to show {holder} killed")
        assert "redelivery in" in shown_text(card(app, holder))
        # The kill is on the timeline too, as something the lab did, with what the listener held.
        assert any(
            entry.lab_event and entry.event.startswith(f"{holder} killed (SIGKILL) holding jim #1")
            for entry in app.view.timeline
        )

        assert app.lab is not None
        await app.lab.control("normal", other)
        await wait_for(
            pilot, lambda: account(app, "guarded", "jim") == (1, 4000), 20, "Jim #1 applied after the ack wait"
        )
        await wait_for(pilot, lambda: (other, 2, "applied") in deliveries_of(app, 1), 5, f"the redelivery to {other}")
        applied = [d for d in deliveries_of(app, 1) if d[2] == "applied"]
        assert applied == [(other, 2, "applied")]
        await wait_for(
            pilot,
            lambda: f"redelivered to {other} ×2, applied" in shown_text(card(app, holder), 200),
            5,
            "the killed card to say so",
        )

        # Killing it again fails in the worker; the failure reaches the user as a notification.
        await pilot.press("k")
        await wait_for(
            pilot, lambda: any(f"listener {holder} is not running" in note for note in notes), 5, "the error"
        )
        await quit_app(pilot, app)


async def test_pausing_past_the_ack_wait_shows_the_redelivery(settings: Settings) -> None:
    settings.naive = 0
    app = NatslabApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        holder = await hold_next_event(app, pilot, ("A", "B"))
        other = "B" if holder == "A" else "A"
        key = "1" if holder == "A" else "2"

        await pilot.press(key, "p")
        await wait_for(pilot, lambda: app.view.listeners[holder].state == "paused", 5, f"{holder} to be paused")
        assert app.lab is not None
        await app.lab.control("normal", other)
        await wait_for(pilot, lambda: (other, 2, "applied") in deliveries_of(app, 1), 20, f"the redelivery to {other}")
        await wait_for(
            pilot,
            lambda: f"redelivered to {other} ×2, applied" in shown_text(card(app, holder), 200),
            5,
            "the paused card to say so",
        )

        # Woken up, the paused listener still holds its stale copy: the guard acks it as a duplicate.
        await pilot.press(key, "p")
        await wait_for(pilot, lambda: app.view.listeners[holder].state != "paused", 5, f"{holder} to resume")
        await app.lab.control("normal", holder)
        await wait_for(
            pilot, lambda: (holder, 1, "duplicate") in deliveries_of(app, 1), 10, "the stale copy to be a duplicate"
        )
        # The account pane is polled twice a second and may not have shown Jim yet (seen once in ten
        # runs): wait for the row, then it must be the one deposit, applied once.
        await wait_for(pilot, lambda: account(app, "guarded", "jim") is not None, 5, "the account pane to show Jim")
        assert account(app, "guarded", "jim") == (1, 4000)
        await quit_app(pilot, app)


async def test_the_form_rejects_bad_amounts_and_user_ids_with_a_message(settings: Settings) -> None:
    app = NatslabApp(settings, autostart=False)
    results: list[object] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(PublishForm("deposit", "jim"), results.append)
        await wait_for(pilot, lambda: form_ready(app, "amount"), 5, "the form")
        error = app.screen.query_one("#publish-error")

        await pilot.press(*"7x", "enter")
        assert "'7x' is not an amount like 70 or 70.50" in shown_text(error)
        assert isinstance(app.screen, PublishForm) and results == []

        await pilot.press("backspace", "backspace", "7", "0")
        assert shown_text(error).strip() == ""
        await pilot.press("shift+tab", "end", "!", "enter")
        assert "user: must be 1-64 characters" in shown_text(error)
        assert isinstance(app.screen, PublishForm) and results == []

        await pilot.press("backspace", "enter")
        await wait_for(pilot, lambda: results != [], 5, "the form to send")
        (request,) = results
        assert (request.kind, request.user_id, request.amount_cents) == ("deposit", "jim", 7000)  # type: ignore[attr-defined]


async def test_quitting_leaves_no_child_process(settings: Settings) -> None:
    settings.naive = 1
    app = NatslabApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        assert app.lab is not None and app.lab.server is not None and app.lab.supervisor is not None
        pids = [app.lab.server.pid] + [entry.pid for entry in app.lab.supervisor.listeners.values()]
        assert len(pids) == 1 + settings.listeners + settings.naive + settings.partitioned and all(pids)
        await quit_app(pilot, app)
    assert app.return_code == 0
    assert [pid for pid in pids if alive(pid)] == []


# -- the dashboard killed outright ----------------------------------------------------------------

HEADLESS_DASHBOARD = """
import sys
from pathlib import Path
from dashboard.ui.app import NatslabApp
from dashboard.lab.settings import Settings
NatslabApp(Settings(data_dir=Path(sys.argv[1]), ack_wait_s=2.0, listeners=2, naive=0, partitioned=0)).run(headless=True)
"""


def alive(pid: int) -> bool:
    """Running or stopped, as opposed to gone or a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(parent: int) -> list[tuple[int, str]]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append((int(entry.name), cmdline))
    return children


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
async def test_killing_the_dashboard_takes_its_children_along(tmp_path: Path) -> None:
    dashboard = subprocess.Popen(
        [sys.executable, "-c", HEADLESS_DASHBOARD, str(tmp_path / "data")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def started() -> bool:
            commands = [cmd for _, cmd in children_of(dashboard.pid)]
            return (
                sum("nats-server" in c and "-js" in c for c in commands) == 1
                and sum(" listener " in c for c in commands) == 2
            )

        await wait_until(started, 30, "the headless dashboard to start its server and listeners")
        children = [pid for pid, _ in children_of(dashboard.pid)]
        dashboard.send_signal(signal.SIGKILL)
        dashboard.wait()
        await wait_until(lambda: not any(alive(pid) for pid in children), 10, "the children to die with the dashboard")
    finally:
        if dashboard.poll() is None:
            dashboard.kill()
            dashboard.wait()
    assert not any(alive(pid) for pid in children)


# -- the event history browser ---------------------------------------------------------------------


async def test_the_history_browser_lists_every_stored_event_and_filters_by_user(settings: Settings) -> None:
    events = [stored(*row) for row in JIM_AND_MARY] + [parse_stored(5, "account.deposit.eve", b"{not json", "")]
    app = NatslabApp(settings, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        async def load() -> list[StoredEvent]:
            return events

        app.push_screen(HistoryScreen(load))
        await wait_for(pilot, lambda: bool(app.screen.query(DataTable)), 5, "the history screen")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 5, 5, "the history to load")
        assert [str(cell) for cell in table.get_row_at(4)[:3]] == ["5", "account:deposit", "poison"]

        await pilot.press("f", "j", "i")
        await wait_for(pilot, lambda: table.row_count == 3, 5, "the filter to apply")
        assert {str(table.get_row_at(index)[2]) for index in range(3)} == {"jim"}
        await pilot.press("enter", "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HistoryScreen), 5, "the history to close")


async def test_a_failing_history_read_is_reported_to_the_user(settings: Settings) -> None:
    app = NatslabApp(settings, autostart=False)
    notes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.pause()

        async def load() -> list[StoredEvent]:
            raise LabError("the stream is gone")

        app.push_screen(HistoryScreen(load))
        await wait_for(pilot, lambda: any("the stream is gone" in note for note in notes), 5, "the notification")
        assert notes == ["reading the event history failed: the stream is gone"]


async def pick_scenario(pilot: Pilot, app: NatslabApp, name: str, key: str) -> None:
    """x, then the scenario `name` in the picker, then `key`: enter (step by step) or g (straight through)."""
    await pilot.press("x")
    await wait_for(pilot, lambda: isinstance(app.screen, ScenarioPicker), 5, "the scenario picker")
    names = [option.id for option in app.screen.query_one("#scenarios").options]  # type: ignore[attr-defined]
    assert names[0] == "overtaking-withdrawal" and "poison" in names and len(names) >= 10
    await pilot.press(*["down"] * names.index(name), key)
    await wait_for(pilot, lambda: not isinstance(app.screen, ScenarioPicker), 5, "the picker to close")


async def test_x_picks_a_scenario_and_runs_it_straight_through(settings: Settings) -> None:
    settings.naive = 1
    app = NatslabApp(settings)
    app.driver.caption_read_s = 0.0
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        await pick_scenario(pilot, app, "poison", "g")
        await wait_for(pilot, lambda: app.view.caption_kind == "lesson", 60, "the poison scenario to finish")
        scenario = app.view.scenario
        assert scenario is not None and not scenario.step_mode and scenario.name == "poison"
        assert any("recorded as poison (9)" in step for step in scenario.steps)
        # The steps give way to what the scenario showed.
        assert app.view.caption.startswith("poison finished. What it showed: ")
        await wait_for(pilot, lambda: account(app, "guarded", "pia") == (3, 3000), 10, "Pia's good deposits")
        await quit_app(pilot, app)


async def test_the_first_scenario_step_by_step_reads_every_caption_and_a_timeline_in_commit_order(
    settings: Settings,
) -> None:
    """Space runs each step; every caption stays in the log; the guarded rows of Jim's events come in the
    order the database took them, each with the rule that decided it."""
    settings.naive = 1
    app = NatslabApp(settings)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        await pick_scenario(pilot, app, "overtaking-withdrawal", "enter")
        seen: list[str] = []
        while True:
            await wait_for(
                pilot,
                lambda: app.view.scenario is not None and (app.view.scenario.waiting or app.view.scenario.finished),
                60,
                f"step {len(seen) + 1} to wait for Space, or the scenario to end",
            )
            scenario = app.view.scenario
            assert scenario is not None
            if scenario.finished:
                break
            seen.append(scenario.steps[-1])

            # The bar shows the step and how to run it; earlier steps stay readable.
            def bar_shows(step: str = scenario.steps[-1]) -> bool:
                shown = " ".join(shown_text(app.query_one(CaptionBar), 160).split())
                return step[:60] in shown and "Space goes on" in shown

            await wait_for(pilot, bar_shows, 2, f"the caption bar to show step {len(seen)}")
            await pilot.press("space")
        assert scenario.error is None, scenario.error
        assert len(seen) >= 6 and scenario.steps == seen
        assert app.view.caption.startswith("overtaking-withdrawal finished. What it showed: ")

        # l shows the whole log: every caption, in order, and the lesson.
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, ScenarioLogScreen), 5, "the scenario log")
        log = " ".join(shown_text(app.screen.query_one("#scenario-log Static"), 300).split())  # type: ignore[arg-type]
        positions = [log.find(" ".join(caption.split())) for caption in seen]
        assert -1 not in positions and positions == sorted(positions)
        assert "What it showed:" in log
        await pilot.press("escape")

        # The timeline as drawn: the guarded group applied Jim #1, #2, #3 in that order, each saying
        # its rule, though #3 reached a listener before #2 (it was deferred, waiting for #2).
        user = next(name for name in app.view.accounts["guarded"] if name.startswith("jim"))
        rows = [
            row for row in app.query_one(DeliveryLines).rows if not row.lab_event and row.event.startswith(f"{user} #")
        ]
        guarded = {view.name for view in app.view.listeners.values() if view.mode == "guarded"}
        applied = [row for row in rows if row.listener in guarded and row.outcome == "applied"]
        assert [row.event.split()[1] for row in applied] == ["#1", "#2", "#3"]
        assert [row.rule.split(" · ")[0] for row in applied] == ["last 0 → 1", "last 1 → 2", "last 2 → 3"]
        deferred = [row for row in rows if row.listener in guarded and row.outcome == "deferred"]
        assert deferred and all(row.rule.startswith("waiting for #2") for row in deferred)
        assert all(row.rule for row in rows), [row for row in rows if not row.rule]
        # The kill is a row of its own, before the redelivered #2 is applied.
        kills = [
            i
            for i, row in enumerate(app.query_one(DeliveryLines).rows)
            if row.lab_event and "killed (SIGKILL)" in row.event
        ]
        second = app.query_one(DeliveryLines).rows.index(applied[1])
        assert kills and kills[0] < second
        await quit_app(pilot, app)


async def test_no_cross_for_the_guarded_group_through_the_first_scenario_and_a_burst(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything the status line ever says of the guarded group while events are held, killed,
    redelivered and drained: never ✗, and ✓ at the end."""
    said: list[str] = []
    show = StatusLine.show

    def recording_show(self: StatusLine, view) -> None:
        show(self, view)
        said.append(self.verdicts[0].plain.split(" │ ")[0])

    monkeypatch.setattr(StatusLine, "show", recording_show)
    settings.naive = 1
    app = NatslabApp(settings)
    app.driver.caption_read_s = 0.0
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        await pick_scenario(pilot, app, "overtaking-withdrawal", "g")
        await wait_for(pilot, lambda: app.view.caption_kind in ("lesson", "error"), 90, "the scenario to finish")
        assert app.view.caption_kind == "lesson", app.view.caption
        await pilot.press("b")
        await wait_for(
            pilot,
            lambda: said and said[-1].startswith("guarded ✓") and app.view.published() >= 50,
            60,
            "the burst to drain and the guarded group to check clean",
        )
        assert len(said) > 3  # drawn all along: at the start, through the scenario and the burst
        assert not [line for line in said if "✗" in line]
        assert any("backlog" in line for line in said)  # it did have work on the way
        await quit_app(pilot, app)


async def test_poison_with_markup_is_shown_literally(settings: Settings) -> None:
    import json

    from dashboard.ui.widgets.timeline import DeliveryLines

    settings.naive = settings.partitioned = 0  # two poison deliveries: the guarded group's
    app = NatslabApp(settings)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: listeners_ready(app), 30, "the lab to start")
        assert app.lab is not None and app.lab.nc is not None
        js = app.lab.nc.jetstream()
        payload = {"id": "p1", "type": "account:deposit", "userId": "[red]eve[/red]", "amountCents": 1, "number": 1}
        await js.publish("account.deposit.[b]x", json.dumps({**payload, "createdAt": "x"}).encode())
        await js.publish("account.withdraw.[i]", b"\xff not utf-8")
        await wait_for(
            pilot, lambda: sum(e.outcome == "poison" for e in app.view.timeline) == 2, 20, "two poison deliveries"
        )
        lines = app.query_one(DeliveryLines)

        def shown() -> str:
            return "\n".join(lines.render_line(y).text for y in range(lines.size.height))

        # The view holds both deliveries before the pane's next redraw: wait for both rows, since the
        # pane may have drawn the first one a tick before the second arrived.
        drawn = ("poison deposit.[b]x", "poison withdraw.[i]")
        await wait_for(
            pilot, lambda: all(row in shown() for row in drawn), 5, "the timeline to draw both poison rows, literally"
        )
        await quit_app(pilot, app)


async def test_a_listener_that_cannot_start_shows_as_crashed_with_its_reason(settings: Settings) -> None:
    settings.naive, settings.listeners = 0, 1
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "accounts.db").write_bytes(b"this is not an SQLite database" * 100)
    notes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    app = NatslabApp(settings)
    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        await wait_for(pilot, lambda: bool(app.query(ListenerCard)), 30, "the listener cards")
        await wait_for(
            pilot, lambda: "crashed (exit 1)" in shown_text(card(app, "A")), 30, "listener A to show as crashed"
        )
        assert "✗ accounts.db: file is not a database" in shown_text(card(app, "A"))
        # The card cuts the reason to its width; a notification says it whole.
        reason = f"accounts.db: file is not a database (in {settings.data_dir})"
        assert any(note.startswith(f"Listener A crashed (exit 1): {reason}\n") for note in notes), notes
        assert app.view.caption == f"Listener A crashed: {reason}" and app.view.caption_kind == "error"
        await quit_app(pilot, app)
