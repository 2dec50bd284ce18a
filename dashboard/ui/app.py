"""The natslab dashboard: the Textual App and its wiring.

The App owns a `LabDriver` (which starts and polls the lab in async workers) and a `LabView` (what the
panes show). The driver's workers and the lab's callbacks report with past-tense messages; the
handlers here fold them into the view, and a timer has the main screen redraw what changed a few times
a second, so a busy lab never delays a key press. The lab starts in a worker after the first frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from dashboard.lab.lab import Lab
from dashboard.lab.logs import listener_log
from dashboard.lab.settings import Settings
from dashboard.lab.waits import describe_error
from dashboard.ui import messages
from dashboard.ui.attachment import LabAttachment
from dashboard.ui.driver import LabDriver
from dashboard.ui.screens.help import HelpScreen, help_rows
from dashboard.ui.screens.main import EXPLANATIONS, MainScreen
from dashboard.ui.view import LabView, parse_utc

log = logging.getLogger(__name__)


APP_EXPLANATIONS = {
    "help": "this screen",
    "quit": "leave; a lab this dashboard started stops with it (listeners, publisher, server), one it attached to goes on",
}


class NatslabApp(LabAttachment, App[int]):
    """The dashboard: the lab's state folded into a view, drawn by the main screen."""

    CSS_PATH = "app.tcss"
    TITLE = "natslab"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    BINDINGS = [
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, settings: Settings, *, autostart: bool = True, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.autostart = autostart
        self.clock = clock
        self.driver = LabDriver(settings, self.post_message, clock)
        self.view = LabView(
            url=settings.nats_url, embedded=settings.nats_url is None, ack_wait_s=settings.ack_wait_s,
            sync=None if settings.nats_url else settings.sync, now=clock(),
        )  # fmt: skip
        self.last_user = "jim"
        self.main = MainScreen()

    def get_default_screen(self) -> MainScreen:
        return self.main

    @property
    def lab(self) -> Lab | None:
        return self.driver.lab

    def on_mount(self) -> None:
        settings = self.settings
        if settings.attach:
            self.view.say(f"Looking for the lab on {settings.data_dir}…")
        else:
            self.view.say(
                f"Looking for a lab on {settings.data_dir}; if none runs, starting one: NATS, the publisher,"
                f" {settings.listeners} guarded, {settings.naive} naive and {settings.partitioned} partitioned listeners…"
            )
        if self.autostart:
            self.call_after_refresh(self.work, self.driver.start_lab(), "starting the lab", "lab", exclusive=True)

    def redraw(self) -> None:
        self.main.redraw()

    def work(self, job: Coroutine[Any, Any, None], name: str, group: str, *, exclusive: bool = False) -> Worker[None]:
        """Run one of the driver's jobs as a worker; its failure reaches `worker_state_changed`."""
        return self.run_worker(job, name=name, group=group, exclusive=exclusive, exit_on_error=False)

    # -- what the workers and the lab report -------------------------------------------------------

    def on_lab_changed(self, message: messages.LabChanged) -> None:
        self.view.now = self.clock()  # what the lab did goes on the timeline at this time
        self.view.apply_state(message.state)

    def on_listener_ended(self, message: messages.ListenerEnded) -> None:
        """Say on the caption and in a notification that a listener ended on its own, why, and what to do."""
        member = message.member
        if member.state != "crashed" or member.exit_code == os.EX_SOFTWARE:  # a crash the user armed
            return
        reason = member.reason or "it gave no reason"
        self.view.say(f"Listener {member.name} crashed: {reason}", "error")
        self.notify(
            f"Listener {member.name} crashed (exit {member.exit_code}): {reason}\n"
            f"Once the cause is fixed, select it and press r to restart it."
            f" Its log: {listener_log(self.settings.data_dir, member.name)}",
            severity="error",
            timeout=20,
            markup=False,
        )

    def on_listener_status_received(self, message: messages.ListenerStatusReceived) -> None:
        self.view.apply_status(message.status)

    def on_consumer_info_fetched(self, message: messages.ConsumerInfoFetched) -> None:
        self.view.apply_consumer(message.consumer)

    def on_channel_stats_fetched(self, message: messages.ChannelStatsFetched) -> None:
        self.view.apply_channels(message.stats, message.at)

    def on_accounts_read(self, message: messages.AccountsRead) -> None:
        self.view.apply_accounts(message.guarded, message.naive, message.partitioned)

    def on_partitions_fetched(self, message: messages.PartitionsFetched) -> None:
        self.view.apply_partitions(message.seen)

    def on_poll_failed(self, message: messages.PollFailed) -> None:
        self.view.poll_error = message.error
        self.view.mark("status")

    def on_check_started(self, _: messages.CheckStarted) -> None:
        self.view.checking = True
        self.view.mark("status")

    def on_check_finished(self, message: messages.CheckFinished) -> None:
        if message.report is None:
            self.view.checking = False
            self.view.mark("status")
        else:
            self.view.apply_report(message.report)

    def on_event_published(self, message: messages.EventPublished) -> None:
        result = message.result
        # At the time the event was written, so it comes before the deliveries it caused.
        at = parse_utc(result.event.created_at) or self.clock()
        self.view.lab_event(f"published {result.event.describe()}: {result.where()}", at)

    def on_burst_published(self, message: messages.BurstPublished) -> None:
        self.view.lab_event(f"burst: {message.count} random events recorded; the outbox relay sends them", self.clock())

    def on_listener_controlled(self, message: messages.ListenerControlled) -> None:
        # The timeline shows the state change; the caption says what it means (an idle listener held
        # nothing). While a scenario's steps fill the caption bar, a notification says it instead.
        if self.view.scenario is not None and self.view.scenario.running:
            self.notify(message.done, markup=False, timeout=6)
        else:
            self.view.say(message.done)

    def on_server_restarted(self, _: messages.ServerRestarted) -> None:
        log.info("NATS server restarted")
        self.view.say("NATS server restarted; the stream and the consumers were kept")

    def on_scenario_started(self, message: messages.ScenarioStarted) -> None:
        self.view.scenario_started(message.name, message.summary, message.step_mode)

    def on_caption_said(self, message: messages.CaptionSaid) -> None:
        self.view.scenario_step(message.caption, message.waiting)

    def on_scenario_resumed(self, message: messages.ScenarioResumed) -> None:
        scenario = self.view.scenario
        if scenario is not None and message.run_rest:
            scenario.step_mode = False
        self.view.scenario_step(None)

    def on_scenario_finished(self, message: messages.ScenarioFinished) -> None:
        self.view.scenario_ended(message.lesson)

    def on_scenario_failed(self, message: messages.ScenarioFailed) -> None:
        self.view.scenario_ended(error=message.error)
        self.notify(f"the scenario failed: {message.error}", severity="error", markup=False, timeout=8)

    def on_job_failed(self, message: messages.JobFailed) -> None:
        self.view.say(f"{message.what} failed: {message.error}", "error")
        self.notify(f"{message.what} failed: {message.error}", severity="error", markup=False, timeout=8)

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
        self.notify(f"{worker.name} failed: {describe_error(error)}", severity="error", markup=False, timeout=8)

    # -- help and quitting -------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        if not self.is_screen_installed("help"):
            # Composed once and kept: building its tables again at every `?` was most of a key's cost.
            bindings = [*MainScreen.BINDINGS, *self.BINDINGS]
            self.install_screen(HelpScreen(help_rows(bindings, EXPLANATIONS | APP_EXPLANATIONS)), "help")  # type: ignore[arg-type]
        self.push_screen("help")
