"""The natslab dashboard: the Textual App and its wiring.

The App owns a `Lab` (server, publisher, listener processes) and a `LabView` (what the panes show).
Async workers do all NATS and SQLite work and report back with past-tense messages; the handlers fold
those into the view, and a timer redraws the panes that changed a few times a second, so a busy lab
never delays a key press. The lab starts in a worker after the first frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from nats.errors import Error as NatsError
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from dashboard.lab.checker import CheckReport
from dashboard.lab.history import read_history
from dashboard.lab.lab import ChannelStats, Lab, LabError, nats_reachable, wait_until
from dashboard.lab.scenarios import SCENARIOS
from dashboard.ui.screens.help import HelpScreen, help_rows
from dashboard.ui.screens.history import HistoryScreen
from dashboard.ui.screens.publish_form import PublishForm, PublishRequest
from dashboard.ui.screens.scenario_picker import ScenarioPicker
from dashboard.lab.settings import Settings
from dashboard.ui.widgets.accounts import AccountsPane
from dashboard.ui.widgets.caption import CaptionBar
from dashboard.ui.widgets.channels import ChannelsPane
from dashboard.ui.view import ConsumerView, LabView, Member
from dashboard.ui.widgets.listeners import ListenersPane
from dashboard.ui.widgets.queue_groups import QueueGroupsPane
from dashboard.ui.widgets.status_line import StatusLine
from dashboard.ui.widgets.timeline import DeliveryTimeline
from listeners.account_listener import CRASH_EXIT_CODE
from listeners.accounts import AccountRow
from listeners.groups import GROUPS
from publisher.events import AccountEvent

log = logging.getLogger(__name__)

REDRAW_INTERVAL_S = 0.25
POLL_INTERVAL_S = 0.5
CHECK_INTERVAL_S = 2.0
START_RETRY_S = 2.0
START_TIMEOUT_S = 30.0
# How often the dashboard checks that its terminal is still there (see end_when_the_terminal_hangs_up).
TERMINAL_CHECK_S = 1.0
BURST_SIZE = 50
BURST_USERS = tuple(f"user{n}" for n in range(1, 6))
SLOW_MS = 2000
# Errors a poll can meet while the server restarts or a database is busy: shown, and the poll goes on.
POLL_ERRORS = (NatsError, asyncio.TimeoutError, OSError, sqlite3.Error)

EXPLANATIONS = {
    "publish": "a form for user and amount; Enter sends, Esc cancels",
    "select": "select a listener by the number on its card",
    "kill": "SIGKILL the selected listener; what it holds comes back after the ack wait",
    "pause": "SIGSTOP the selected listener, or SIGCONT it when paused",
    "restart": "kill the selected listener and start it again under the same name",
    "crash": "the selected listener exits right after its next database commit, before acking",
    "slow": "the selected listener takes 2 s per event, or back to normal",
    "add": "start another guarded listener in account-service",
    "restart_server": "stop and start the embedded NATS server; the stream is kept",
    "burst": f"publish {BURST_SIZE} random deposits and withdrawals for {len(BURST_USERS)} users",
    "scenario": "pick a failure scenario (the seed's story first) and run it step by step, one caption per step",
    "history": "every event stored in the stream, filterable by user",
    "help": "this screen",
    "quit": "stop the listeners, the publisher and the server, then leave",
}


# -- messages from the workers ---------------------------------------------------------------------


class LabStarted(Message):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class LabUnreachable(Message):
    """Starting failed because NATS cannot be reached; the start worker tries again."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ListenerStatusReceived(Message, bubble=False):
    """A listener's status message; many a second, so a pending one without deliveries is replaced."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, ListenerStatusReceived)
            and message.status.get("name") == self.status.get("name")
            and not message.status.get("deliveries")
            and not self.status.get("deliveries")
        )


class ConsumerInfoFetched(Message, bubble=False):
    def __init__(self, consumer: ConsumerView) -> None:
        super().__init__()
        self.consumer = consumer


class ChannelStatsFetched(Message, bubble=False):
    def __init__(self, stats: dict[str, ChannelStats], at: float) -> None:
        super().__init__()
        self.stats = stats
        self.at = at


class AccountsRead(Message, bubble=False):
    def __init__(self, guarded: list[AccountRow], naive: list[AccountRow]) -> None:
        super().__init__()
        self.guarded = guarded
        self.naive = naive


class PollFailed(Message, bubble=False):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class CheckStarted(Message, bubble=False):
    pass


class CheckFinished(Message, bubble=False):
    def __init__(self, report: CheckReport | None) -> None:
        super().__init__()
        self.report = report


class EventPublished(Message):
    def __init__(self, event: AccountEvent, stream_seq: int | None) -> None:
        super().__init__()
        self.event = event
        self.stream_seq = stream_seq


class BurstPublished(Message):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


class ListenerControlled(Message):
    def __init__(self, done: str) -> None:
        super().__init__()
        self.done = done


class ServerRestarted(Message):
    pass


class CaptionSaid(Message):
    def __init__(self, caption: str) -> None:
        super().__init__()
        self.caption = caption


class ScenarioFinished(Message):
    pass


def describe_error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# -- the app ---------------------------------------------------------------------------------------


class NatslabApp(App[int]):
    """Panes for channels, queue groups, listeners, account databases and deliveries; keys to break things."""

    CSS_PATH = "app.tcss"
    TITLE = "natslab"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    BINDINGS = [
        Binding("d", "publish('deposit')", "deposit"),
        Binding("w", "publish('withdraw')", "withdraw"),
        Binding("1", "select(1)", "select", key_display="1-9"),
        *[Binding(str(n), f"select({n})", f"select listener {n}", show=False) for n in range(2, 10)],
        Binding("k", "kill", "kill"),
        Binding("p", "pause", "pause"),
        Binding("r", "restart", "restart"),
        Binding("c", "crash", "crash"),
        Binding("s", "slow", "slow"),
        Binding("a", "add", "add"),
        Binding("n", "restart_server", "nats"),
        Binding("b", "burst", "burst"),
        Binding("x", "scenario", "scenario"),
        Binding("h", "history", "history"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, settings: Settings, *, autostart: bool = True, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.autostart = autostart
        self.clock = clock
        self.lab: Lab | None = None
        self.view = LabView(
            url=settings.nats_url, embedded=settings.nats_url is None, ack_wait_s=settings.ack_wait_s, now=clock()
        )
        self.last_user = "jim"
        # A scenario caption stays this long before the next step, so a person can read it.
        self.caption_read_s = min(1.0, settings.ack_wait_s / 4)

    def compose(self) -> ComposeResult:
        yield CaptionBar(id="caption")
        with VerticalScroll(id="body"):
            with Horizontal(id="top"):
                yield ChannelsPane(id="channels")
                yield QueueGroupsPane(id="groups")
            yield ListenersPane(id="listeners")
            with Horizontal(id="bottom"):
                yield AccountsPane(id="accounts")
                yield DeliveryTimeline(id="timeline")
        yield StatusLine(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        settings = self.settings
        where = f"NATS at {settings.nats_url}" if settings.nats_url else "the embedded NATS server"
        self.view.say(
            f"Starting {where}, the publisher, {settings.listeners} guarded and {settings.naive} naive listeners…"
        )
        self.redraw()
        self.set_interval(REDRAW_INTERVAL_S, self.redraw)
        if self.autostart:
            self.call_after_refresh(self.start_lab)

    # -- drawing -----------------------------------------------------------------------------------

    def redraw(self) -> None:
        """Bring the panes up to date with the view; called a few times a second, never per event."""
        view = self.view
        view.now = self.clock()
        if self.lab is not None:
            self.observe_lab(self.lab)
        dirty = view.take_dirty()
        counting_down = ListenersPane.counting_down(view)
        if "caption" in dirty:
            self.query_one(CaptionBar).show(view)
        if "channels" in dirty:
            self.query_one(ChannelsPane).show(view)
        if "groups" in dirty or counting_down:
            self.query_one(QueueGroupsPane).show(view)
        if "listeners" in dirty or counting_down:
            self.query_one(ListenersPane).show(view)
        if "accounts" in dirty:
            self.query_one(AccountsPane).show(view)
        if "timeline" in dirty:
            self.query_one(DeliveryTimeline).show(view)
        if "status" in dirty:
            self.query_one(StatusLine).show(view)

    def observe_lab(self, lab: Lab) -> None:
        """Read what the lab keeps in memory (processes, connection, outbox); the only I/O is reading
        the last line a listener wrote when it has just ended by itself."""
        supervisor = lab.supervisor
        if supervisor is not None:
            for entry in supervisor.poll():
                if entry.state == "crashed" and entry.exit_code != CRASH_EXIT_CODE:  # not a crash the user armed
                    self.crashed_by_itself(entry.name, entry.exit_code, entry.reason)
            self.view.apply_members(
                [
                    Member(e.name, e.mode, e.group, e.pid, e.state, e.restarts, e.killed_at, e.exit_code, e.reason)
                    for e in supervisor.listeners.values()
                ]
            )
        self.view.set_server(self.view.url, lab.server_state, lab.connected, self.settings.nats_url is None)
        if lab.publisher is not None:
            self.view.set_outbox_error(lab.publisher.last_error)

    def crashed_by_itself(self, name: str, exit_code: int | None, reason: str | None) -> None:
        """Say on the caption and in a notification that a listener ended on its own, why, and what to do."""
        reason = reason or "it gave no reason"
        log_file = self.settings.logs_dir / f"listener-{name}.log"
        self.view.say(f"Listener {name} crashed: {reason}", "error")
        self.notify(
            f"Listener {name} crashed (exit {exit_code}): {reason}\n"
            f"Once the cause is fixed, select it and press r to restart it. Its log: {log_file}",
            severity="error",
            timeout=20,
            markup=False,
        )

    # -- workers -----------------------------------------------------------------------------------

    @work(exclusive=True, group="lab", exit_on_error=False, name="starting the lab")
    async def start_lab(self) -> None:
        url = self.settings.nats_url
        while True:
            if url is not None and not await nats_reachable(url):
                self.post_message(LabUnreachable(f"cannot reach NATS at {url}"))
                await asyncio.sleep(START_RETRY_S)
                continue
            lab = Lab(self.settings)
            lab.status_callbacks.append(self.status_arrived)
            self.lab = lab
            try:
                await asyncio.wait_for(lab.start(), START_TIMEOUT_S)
            except (TimeoutError, LabError) as exc:  # NATS went away meanwhile: say so, try again
                log.warning("lab start failed: %r", exc)
                await lab.stop()
                self.post_message(LabUnreachable(describe_error(exc)))
                await asyncio.sleep(START_RETRY_S)
                continue
            self.post_message(LabStarted(lab.url))
            return

    def status_arrived(self, status: dict[str, Any]) -> None:
        """Called by the lab for every listener status message, on this event loop."""
        self.post_message(ListenerStatusReceived(status))

    @work(exclusive=True, group="poll-server", exit_on_error=False, name="polling the server")
    async def poll_server(self) -> None:
        """Consumer info, channel stats and both account databases, one round at a time."""
        lab = self.lab
        assert lab is not None
        channels: dict[str, ChannelStats] | None = None
        while True:
            started = time.monotonic()
            try:
                if lab.connected:
                    for group in GROUPS:
                        self.post_message(ConsumerInfoFetched(ConsumerView.from_info(await lab.consumer_info(group))))
                    channels = await lab.channel_stats(channels)
                    self.post_message(ChannelStatsFetched(channels, self.clock()))
                self.post_message(AccountsRead(await lab.accounts("guarded"), await lab.accounts("naive")))
            except POLL_ERRORS as exc:
                log.info("poll failed: %r", exc)
                self.post_message(PollFailed(describe_error(exc)))
            await asyncio.sleep(max(0.05, POLL_INTERVAL_S - (time.monotonic() - started)))

    @work(exclusive=True, group="poll-checker", exit_on_error=False, name="running the checker")
    async def run_checker(self) -> None:
        """The checker reads the whole history, so it runs less often, and never twice at once."""
        lab = self.lab
        assert lab is not None
        while True:
            started = time.monotonic()
            if lab.connected:
                self.post_message(CheckStarted())
                try:
                    report: CheckReport | None = await lab.check()
                except POLL_ERRORS as exc:
                    log.info("check failed: %r", exc)
                    self.post_message(PollFailed(f"checker: {describe_error(exc)}"))
                    report = None
                self.post_message(CheckFinished(report))
            # A long history makes a check costly: keep it to about a fifth of the time.
            took = time.monotonic() - started
            await asyncio.sleep(max(CHECK_INTERVAL_S - took, 4 * took))

    @work(group="publish", exit_on_error=False, name="publishing")
    async def publish_event(self, request: PublishRequest) -> None:
        lab = self.lab
        assert lab is not None and lab.publisher is not None
        result = await lab.publisher.publish(request.kind, request.user_id, request.amount_cents)
        self.post_message(EventPublished(result.event, result.stream_seq))

    @work(group="publish", exit_on_error=False, name="publishing a burst")
    async def publish_burst(self, count: int) -> None:
        lab = self.lab
        assert lab is not None and lab.publisher is not None
        rng = random.Random()
        for _ in range(count):
            kind = "deposit" if rng.random() < 0.6 else "withdraw"
            await lab.publisher.record(kind, rng.choice(BURST_USERS), rng.randint(1, 200) * 100)
        self.post_message(BurstPublished(count))

    @work(group="control", exit_on_error=False, name="controlling a listener")
    async def control_listener(self, name: str, action: str) -> None:
        lab = self.lab
        assert lab is not None and lab.supervisor is not None
        supervisor = lab.supervisor
        if action == "kill":
            supervisor.kill(name)
            done = f"{name} killed (SIGKILL)"
        elif action == "pause":
            entry = supervisor.toggle_pause(name)
            done = f"{name} paused (SIGSTOP)" if entry.state == "paused" else f"{name} resumed (SIGCONT)"
        elif action == "restart":
            supervisor.restart(name)
            done = f"{name} restarted"
        elif action == "crash":
            await lab.send_control(name, "crash-after-commit")
            done = f"{name} will crash after its next commit, before acking"
        elif action == "slow":
            slow = self.view.listeners[name].slow_ms > 0
            await lab.send_control(name, "normal" if slow else f"slow {SLOW_MS}")
            done = f"{name} back to normal speed" if slow else f"{name} slowed to {SLOW_MS} ms per event"
        elif action == "add":
            entry = supervisor.spawn("guarded")
            done = f"listener {entry.name} added to {entry.group}"
        else:
            raise ValueError(f"unknown listener action {action!r}")
        self.post_message(ListenerControlled(done))

    @work(exclusive=True, group="server", exit_on_error=False, name="restarting the NATS server")
    async def restart_server(self) -> None:
        lab = self.lab
        assert lab is not None
        await lab.restart_server()
        self.post_message(ServerRestarted())

    @work(exclusive=True, group="scenario", exit_on_error=False, name="the scenario")
    async def run_scenario(self, name: str) -> None:
        lab = self.lab
        assert lab is not None
        scenario = SCENARIOS[name]
        step = 0

        async def say(caption: str) -> None:
            nonlocal step
            step += 1
            self.post_message(CaptionSaid(f"{name} [{step}] {caption}"))
            await asyncio.sleep(self.caption_read_s)

        try:
            await scenario.run(lab, say, random.Random())
        except Exception:
            await self.restore_speed(lab)  # a failed step may leave listeners slowed down
            raise
        self.post_message(ScenarioFinished())

    @staticmethod
    async def restore_speed(lab: Lab) -> None:
        for entry in lab.supervisor.listeners.values() if lab.supervisor is not None else ():
            if entry.alive and entry.state != "paused":
                try:
                    await lab.send_control(entry.name, "normal")
                except LabError as exc:
                    log.warning("could not restore %s to normal speed: %s", entry.name, exc)

    @work(group="shutdown", exit_on_error=False, name="shutting down")
    async def shutdown(self) -> None:
        me = get_current_worker()
        others = [worker for worker in self.workers if worker is not me]
        for worker in others:
            worker.cancel()
        try:
            # A worker cancelled before it started stays pending: nothing to wait for.
            await wait_until(
                lambda: all(worker.is_finished or worker.state is WorkerState.PENDING for worker in others),
                5.0,
                "the workers to stop",
            )
        except TimeoutError:  # stop the lab anyway: that is what must not be skipped
            log.warning("still running at shutdown: %s", [w.name for w in others if not w.is_finished])
        code = 0
        log.info("stopping the lab")
        if self.lab is not None:
            try:
                await self.lab.stop()
            except Exception:
                log.exception("stopping the lab failed")
                code = 1
        self.exit(code)

    async def on_unmount(self) -> None:
        # However the app ends (q, ctrl+q, an exception, a test leaving run_test), the lab goes with
        # it; stopping twice is harmless, so after `q` this finds nothing left to do.
        if self.lab is not None:
            await self.lab.stop()

    # -- what the workers report -------------------------------------------------------------------

    def on_lab_started(self, message: LabStarted) -> None:
        log.info("lab started: NATS at %s, data in %s", message.url, self.settings.data_dir)
        view = self.view
        view.phase, view.url = "running", message.url
        view.say("Ready. d deposits, w withdraws, x runs a scenario, ? lists every key.")
        self.poll_server()
        self.run_checker()

    def on_lab_unreachable(self, message: LabUnreachable) -> None:
        self.view.set_server(self.view.url, "unreachable", False, self.view.embedded)
        self.view.say(f"{message.error}; trying again…", "error")

    def on_listener_status_received(self, message: ListenerStatusReceived) -> None:
        self.view.apply_status(message.status)

    def on_consumer_info_fetched(self, message: ConsumerInfoFetched) -> None:
        self.view.apply_consumer(message.consumer)

    def on_channel_stats_fetched(self, message: ChannelStatsFetched) -> None:
        self.view.apply_channels(message.stats, message.at)

    def on_accounts_read(self, message: AccountsRead) -> None:
        self.view.apply_accounts(message.guarded, message.naive)

    def on_poll_failed(self, message: PollFailed) -> None:
        self.view.poll_error = message.error
        self.view.mark("status")

    def on_check_started(self, _: CheckStarted) -> None:
        self.view.checking = True
        self.view.mark("status")

    def on_check_finished(self, message: CheckFinished) -> None:
        if message.report is None:
            self.view.checking = False
            self.view.mark("status")
        else:
            self.view.apply_report(message.report)

    def on_event_published(self, message: EventPublished) -> None:
        event = message.event
        where = f"stream seq {message.stream_seq}" if message.stream_seq else "in the outbox until NATS is back"
        self.notify(f"{event.describe()}: {where}", title="published", markup=False, timeout=3)

    def on_burst_published(self, message: BurstPublished) -> None:
        self.notify(f"{message.count} random events recorded; the outbox relay sends them", markup=False, timeout=3)

    def on_listener_controlled(self, message: ListenerControlled) -> None:
        log.info("%s", message.done)
        self.notify(message.done, markup=False, timeout=3)

    def on_server_restarted(self, _: ServerRestarted) -> None:
        log.info("NATS server restarted")
        self.notify("NATS server restarted; the stream and the consumers were kept", timeout=3)

    def on_caption_said(self, message: CaptionSaid) -> None:
        self.view.say(message.caption, "scenario")

    def on_scenario_finished(self, _: ScenarioFinished) -> None:
        self.notify("scenario finished: compare the guarded and the naive database", timeout=5)

    @on(Worker.StateChanged)
    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's failure ends up here, and in front of the user."""
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error
        assert error is not None
        log.error("%s failed", worker.name, exc_info=error)
        if worker.group == "lab":
            self.view.phase = "failed"
            self.view.say(f"natslab could not start: {describe_error(error)}", "error")
        elif worker.group == "scenario":
            self.view.say(f"The scenario stopped: {describe_error(error)}", "error")
        self.notify(f"{worker.name} failed: {describe_error(error)}", severity="error", markup=False, timeout=8)

    # -- keys --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Another screen (a form, help, history) is on top: the lab keys wait for it to close.
        if action in ("quit", "help") or len(self.screen_stack) <= 1:
            return True
        return action not in {binding.action.split("(", 1)[0] for binding in self.BINDINGS}

    def ready_lab(self) -> Lab | None:
        if self.lab is None or self.view.phase != "running":
            self.notify("natslab is still starting", severity="warning", timeout=2)
            return None
        return self.lab

    def selected_listener(self) -> str | None:
        name = self.view.selected
        if name is None or name not in self.view.listeners:
            self.notify("no listener selected: press 1-9", severity="warning", timeout=2)
            return None
        return name

    def action_publish(self, kind: str) -> None:
        if self.ready_lab() is not None:
            self.push_screen(PublishForm(kind, self.last_user), self.publish_requested)

    def publish_requested(self, request: PublishRequest | None) -> None:
        if request is not None:
            self.last_user = request.user_id
            self.publish_event(request)

    def action_select(self, number: int) -> None:
        ordered = self.view.ordered_listeners()
        if not 1 <= number <= len(ordered):
            self.notify(f"there is no listener {number}", severity="warning", timeout=2)
            return
        self.view.selected = ordered[number - 1].name
        self.view.mark("listeners", "groups")
        self.redraw()
        self.query_one(ListenersPane).reveal(self.view.selected)

    def _control(self, action: str) -> None:
        if self.ready_lab() is None:
            return
        name = self.selected_listener() if action != "add" else ""
        if name is not None:
            self.control_listener(name, action)

    def action_kill(self) -> None:
        self._control("kill")

    def action_pause(self) -> None:
        self._control("pause")

    def action_restart(self) -> None:
        self._control("restart")

    def action_crash(self) -> None:
        self._control("crash")

    def action_slow(self) -> None:
        self._control("slow")

    def action_add(self) -> None:
        self._control("add")

    def action_restart_server(self) -> None:
        if self.ready_lab() is not None:
            self.restart_server()

    def action_burst(self) -> None:
        if self.ready_lab() is not None:
            self.publish_burst(BURST_SIZE)

    def action_scenario(self) -> None:
        if self.ready_lab() is None:
            return
        if any(worker.group == "scenario" and worker.is_running for worker in self.workers):
            self.notify("the scenario is already running", severity="warning", timeout=3)
            return
        self.push_screen(
            ScenarioPicker([(scenario.name, scenario.summary) for scenario in SCENARIOS.values()]), self.scenario_chosen
        )

    def scenario_chosen(self, name: str | None) -> None:
        if name is not None and self.ready_lab() is not None:
            self.run_scenario(name)

    def action_history(self) -> None:
        lab = self.ready_lab()
        if lab is not None and lab.nc is not None:
            nc = lab.nc
            self.push_screen(HistoryScreen(lambda: read_history(nc)))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(help_rows(self.BINDINGS, EXPLANATIONS)))

    async def action_quit(self) -> None:
        if self.view.phase == "stopping":
            return
        self.view.phase = "stopping"
        self.view.say("Stopping the listeners, the publisher and the NATS server…", "warning")
        self.redraw()
        self.shutdown()


def end_when_the_terminal_hangs_up(fd: int, interval: float = TERMINAL_CHECK_S) -> None:
    """End this process once its controlling terminal on `fd` has hung up (run in a daemon thread).

    A terminal can go without a SIGHUP reaching the dashboard: a tmux pane running `make run` is
    killed, make (the session leader) gets the signal and waits for its child. Textual does not notice:
    its output thread dies on the first failed write, the next writes block the event loop for good
    and its input thread spins on end-of-file, holding the lab and a core. Exiting hard is safe here:
    the listener processes and the embedded server end with this process (PR_SET_PDEATHSIG), and
    every database write is already committed.
    """
    while True:
        time.sleep(interval)
        try:
            os.tcgetpgrp(fd)
        except OSError as exc:
            log.warning("the terminal hung up (%s); ending the dashboard and its lab", exc)
            logging.shutdown()
            os._exit(128 + signal.SIGHUP)


def run_dashboard(settings: Settings) -> int:
    """Run the dashboard until `q`; logs go to `logs/dashboard.log` in the data dir, never to the terminal."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.logs_dir / "dashboard.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        os.tcgetpgrp(sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):  # not our controlling terminal: nothing to watch
        pass
    else:
        threading.Thread(
            target=end_when_the_terminal_hangs_up, args=(sys.__stdout__.fileno(),), name="terminal-watch", daemon=True
        ).start()
    try:
        code = NatslabApp(settings).run()
    finally:
        root.removeHandler(handler)
        handler.close()
    return code or 0
