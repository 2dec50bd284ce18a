"""The dashboard's work on the lab: the bodies of the app's async workers.

Each method runs as a Textual worker (the app starts it with `run_worker`), talks to the lab over NATS
and SQLite, and reports what happened as a past-tense message (`dashboard.ui.messages`). Nothing here
touches a widget: the app's handlers fold the messages into the view and the main screen draws it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable

from nats.errors import Error as NatsError
from textual.message import Message

from dashboard.lab.history import HistoryError
from dashboard.lab.lab import Action, Lab, LabError
from dashboard.lab.live_check import LiveChecker
from dashboard.lab.observe import ChannelStats
from dashboard.lab.scenarios import SCENARIOS
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import TRICKLE_RATE, record_random, trickle, user_names
from dashboard.lab.waits import nats_reachable
from dashboard.ui.messages import (
    AccountsRead,
    BurstPublished,
    CaptionSaid,
    ChannelStatsFetched,
    CheckFinished,
    CheckStarted,
    ConsumerInfoFetched,
    EventPublished,
    LabChanged,
    LabStarted,
    LabUnreachable,
    ListenerControlled,
    ListenerEnded,
    ListenerStatusReceived,
    PollFailed,
    ScenarioFinished,
    ScenarioStarted,
    ServerRestarted,
)
from dashboard.ui.view import ConsumerView
from listeners.groups import GROUPS
from publisher.sqlite import DatabaseUnavailable

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
CHECK_INTERVAL_S = 1.0  # a pass reads every new event; once a second keeps it a small share of a core
START_RETRY_S = 2.0
START_TIMEOUT_S = 30.0
BURST_USERS = tuple(user_names(5))
# Errors a poll can meet while the server restarts or a database is busy or unreadable: shown, and the poll goes on.
POLL_ERRORS = (NatsError, asyncio.TimeoutError, OSError, sqlite3.Error, DatabaseUnavailable, HistoryError)


def describe_error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class LabDriver:
    """Starts the lab, polls it, checks it, and carries out what the keys ask of it."""

    def __init__(self, settings: Settings, post: Callable[[Message], object], clock: Callable[[], float]) -> None:
        self.settings = settings
        self.post = post
        self.clock = clock
        self.lab: Lab | None = None
        # A scenario caption stays this long before the next step, so a person can read it.
        self.caption_read_s = min(1.0, settings.ack_wait_s / 4)
        # In step mode, a scenario waits on this after each caption until Space sets it.
        self._step = asyncio.Event()
        self._step_mode = False

    def ready(self) -> Lab:
        assert self.lab is not None, "the lab has not been started"
        return self.lab

    async def start_lab(self) -> None:
        """Start the lab, trying again while NATS cannot be reached; the lab's callbacks become messages."""
        url = self.settings.nats_url
        while True:
            if url is not None and not await nats_reachable(url):
                self.post(LabUnreachable(f"cannot reach NATS at {url}"))
                await asyncio.sleep(START_RETRY_S)
                continue
            lab = Lab(self.settings)
            lab.on_status.append(lambda status: self.post(ListenerStatusReceived(status)))
            lab.on_change.append(lambda state: self.post(LabChanged(state)))
            lab.on_ended.append(lambda member: self.post(ListenerEnded(member)))
            self.lab = lab
            try:
                await asyncio.wait_for(lab.start(), START_TIMEOUT_S)
            except (TimeoutError, LabError) as exc:  # NATS went away meanwhile: say so, try again
                log.warning("lab start failed: %r", exc)
                await lab.stop()
                self.post(LabUnreachable(describe_error(exc)))
                await asyncio.sleep(START_RETRY_S)
                continue
            self.post(LabStarted(lab.url))
            return

    async def poll_server(self) -> None:
        """Consumer info and channel stats, one round at a time. The account rows come with the checker's
        passes (`run_checker`), from the same read as the verdicts they are shown beside."""
        lab = self.ready()
        channels: dict[str, ChannelStats] | None = None
        while True:
            started = time.monotonic()
            try:
                if lab.connected:
                    for group in GROUPS:
                        self.post(ConsumerInfoFetched(ConsumerView.from_info(await lab.consumer_info(group))))
                    channels = await lab.channel_stats(channels)
                    self.post(ChannelStatsFetched(channels, self.clock()))
            except POLL_ERRORS as exc:
                log.info("poll failed: %r", exc)
                self.post(PollFailed(describe_error(exc)))
            await asyncio.sleep(max(0.05, POLL_INTERVAL_S - (time.monotonic() - started)))

    async def run_checker(self) -> None:
        """The live checker, a pass about once a second and never two at once. Each pass reads only
        what is new, and posts the account rows it read and then its report: the account pane never
        shows a row newer than the expectation it is compared with."""
        lab = self.ready()
        checker: LiveChecker | None = None
        while True:
            started = time.monotonic()
            if lab.connected and lab.nc is not None:
                if checker is None or checker.nc is not lab.nc:
                    checker = LiveChecker(lab.nc, lab.settings.data_dir)
                if checker.reads_all:  # a pass over the whole history takes a while: say it runs
                    self.post(CheckStarted())
                try:
                    result = await checker.check()
                except POLL_ERRORS as exc:
                    log.info("check failed: %r", exc)
                    self.post(PollFailed(f"checker: {describe_error(exc)}"))
                    self.post(CheckFinished(None))
                else:
                    self.post(AccountsRead(result.guarded, result.naive))
                    self.post(CheckFinished(result.report))
            await asyncio.sleep(max(0.05, CHECK_INTERVAL_S - (time.monotonic() - started)))

    async def publish(self, kind: str, user_id: str, amount_cents: int) -> None:
        lab = self.ready()
        assert lab.publisher is not None
        self.post(EventPublished(await lab.publisher.publish(kind, user_id, amount_cents)))

    async def publish_burst(self, count: int) -> None:
        lab = self.ready()
        assert lab.publisher is not None
        await record_random(lab.publisher, random.Random(), BURST_USERS, count)
        self.post(BurstPublished(count))

    async def control(self, action: Action, name: str) -> None:
        self.post(ListenerControlled(await self.ready().control(action, name)))

    async def restart_server(self) -> None:
        await self.ready().restart_server()
        self.post(ServerRestarted())

    async def trickle(self) -> None:
        """Random events at a steady, visible pace until the worker is cancelled."""
        lab = self.ready()
        assert lab.publisher is not None
        await trickle(lab.publisher, random.Random(), BURST_USERS, TRICKLE_RATE)

    async def run_scenario(self, name: str, *, step_mode: bool = False) -> None:
        """Run a scenario on the lab; each caption is a step, and in step mode the step waits for Space."""
        lab = self.ready()
        scenario = SCENARIOS[name]
        self._step_mode = step_mode
        self._step.clear()
        self.post(ScenarioStarted(scenario.name, scenario.summary, step_mode))

        async def say(caption: str) -> None:
            if self._step_mode:
                self.post(CaptionSaid(caption, waiting=True))
                await self._step.wait()
                self._step.clear()
            else:
                self.post(CaptionSaid(caption))
                await asyncio.sleep(self.caption_read_s)

        try:
            await scenario.run(lab, say, random.Random())
        except Exception:
            await self.restore_speed(lab)  # a failed step may leave listeners slowed down
            raise
        self.post(ScenarioFinished(scenario.lesson))

    def next_step(self) -> None:
        """Let a scenario in step mode go on past the caption it shows (the screen asks only while it waits)."""
        self._step.set()

    def run_rest(self) -> None:
        """Leave step mode: the scenario runs its remaining steps without waiting."""
        self._step_mode = False
        self._step.set()

    @staticmethod
    async def restore_speed(lab: Lab) -> None:
        for entry in lab.supervisor.listeners.values() if lab.supervisor is not None else ():
            if entry.alive and entry.state != "paused":
                try:
                    await lab.control("normal", entry.name)
                except LabError as exc:
                    log.warning("could not restore %s to normal speed: %s", entry.name, exc)
