"""The dashboard's work on the lab: the bodies of the app's async workers.

The dashboard attaches to the lab that runs on its data dir, and starts one (and serves it, see
`dashboard.lab.service`) only when there is none. Either way it talks to the lab the same way: over
NATS, through a `LabClient`. Each method runs as a Textual worker (the app starts it with
`run_worker`) and reports what happened as a past-tense message (`dashboard.ui.messages`). Nothing
here touches a widget: the app's handlers fold the messages into the view and the main screen draws it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from nats.errors import Error as NatsError
from textual.message import Message

from dashboard.lab.client import LabClient, LabStarting, NoLab
from dashboard.lab.history import HistoryError, StoredEvent, read_history
from dashboard.lab.host import Hosted, lock_holder, open_lab
from dashboard.lab.lab import Action, Lab, LabError, LabState
from dashboard.lab.live_check import LiveChecker
from dashboard.lab.observe import ChannelStats, channel_stats, partitions_seen
from dashboard.lab.protocol import LOST_AFTER_S, HostState, Notice
from dashboard.lab.service import BURST_USERS
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import TRICKLE_RATE
from dashboard.lab.waits import describe_error
from dashboard.ui.messages import (
    AccountsRead,
    BurstPublished,
    CaptionSaid,
    ChannelStatsFetched,
    CheckFinished,
    CheckStarted,
    ConsumerInfoFetched,
    EventPublished,
    HostChanged,
    JobFailed,
    LabAttached,
    LabChanged,
    LabLost,
    LabUnreachable,
    ListenerControlled,
    ListenerEnded,
    ListenerStatusReceived,
    PartitionsFetched,
    PollFailed,
    ScenarioFailed,
    ScenarioFinished,
    ScenarioResumed,
    ScenarioStarted,
    ServerRestarted,
)
from dashboard.ui.view import ConsumerView
from listeners.groups import GROUPS
from listeners.partitions import PartitionsError
from publisher.events import STREAM_NAME
from publisher.sqlite import DatabaseUnavailable

__all__ = ["BURST_USERS", "TRICKLE_RATE", "LabDriver"]

log = logging.getLogger(__name__)

# How a dashboard that hosts its lab is named to the others.
DASHBOARD_HOST = "a natslab dashboard"
POLL_INTERVAL_S = 0.5
CHECK_INTERVAL_S = 1.0  # a pass reads every new event; once a second keeps it a small share of a core
START_RETRY_S = 2.0
START_TIMEOUT_S = 30.0
# How often the dashboard looks whether its lab's host is still there.
HOST_CHECK_S = 0.5
# Errors a poll can meet while the server restarts or a database is busy or unreadable: shown, and the poll goes on.
POLL_ERRORS = (
    NatsError, asyncio.TimeoutError, OSError, sqlite3.Error, DatabaseUnavailable, HistoryError, PartitionsError,
)  # fmt: skip


def lab_state(state: HostState) -> LabState:
    return LabState(state.members, state.server_state, state.connected, state.outbox_error, state.nodes)


class LabDriver:
    """Finds (or starts) the lab, attaches to it, polls it, checks it, and asks its host for what the
    keys want."""

    def __init__(self, settings: Settings, post: Callable[[Message], object], clock: Callable[[], float]) -> None:
        self.settings = settings
        self.post = post
        self.clock = clock
        self.client: LabClient | None = None
        self.hosted: Hosted | None = None  # the lab this dashboard started, if it did
        # How long a scenario caption stays before the next step, on a lab this dashboard starts.
        self.caption_read_s = min(1.0, settings.ack_wait_s / 4)

    @property
    def lab(self) -> Lab | None:
        """The lab this dashboard started and hosts; None when it is attached to another's."""
        return self.hosted.lab if self.hosted is not None else None

    def ready(self) -> LabClient:
        if self.client is None:
            raise LabError("not attached to a lab yet")
        return self.client

    async def start_lab(self, attach_only: bool | None = None) -> None:
        """Attach to the lab on the data dir, starting one first when there is none (and this dashboard
        may); while neither works, say why and try again. The client's news become messages."""
        attach_only = self.settings.attach if attach_only is None else attach_only
        while True:
            try:
                url, hosted = await asyncio.wait_for(
                    open_lab(self.settings, DASHBOARD_HOST, attach_only=attach_only, caption_read_s=self.caption_read_s),
                    START_TIMEOUT_S,
                )
            except (TimeoutError, LabError) as exc:
                log.info("no lab yet: %r", exc)
                waiting, starting = isinstance(exc, NoLab), isinstance(exc, LabStarting)
                self.post(LabUnreachable(describe_error(exc), waiting=waiting, starting=starting))
                await asyncio.sleep(START_RETRY_S)
                continue
            client = LabClient(url)
            try:
                state = await client.attach(timeout=min(10.0, self.settings.nats_timeout_s))
            except (TimeoutError, LabError) as exc:
                if hosted is not None:
                    await hosted.stop(f"the dashboard that started it could not attach: {describe_error(exc)}")
                self.post(LabUnreachable(describe_error(exc)))
                await asyncio.sleep(START_RETRY_S)
                continue
            self.hosted, self.client = hosted, client
            client.on_status.append(lambda status: self.post(ListenerStatusReceived(status)))
            client.on_state.append(self._on_state)
            client.on_notice.append(self._on_notice)
            self.post(LabAttached(state, hosting=hosted is not None))
            return

    async def detach(self, reason: str) -> None:
        """Leave the lab: stop it when this dashboard started it, else only close the connection."""
        client, self.client = self.client, None
        hosted, self.hosted = self.hosted, None
        if client is not None:
            await client.close()
        if hosted is not None:
            await hosted.stop(reason)

    async def watch_host(self) -> None:
        """Notice the lab's host going away (it stopped, or fell silent) and say so."""
        client = self.ready()
        while self.client is client:
            why = client.gone() or self.host_ended(client)
            if why is not None:
                self.post(LabLost(why))
                return
            await asyncio.sleep(HOST_CHECK_S)

    def host_ended(self, client: LabClient) -> str | None:
        """A host on this machine that died without a word (SIGKILL) took its embedded server along:
        the connection stays down and its lock on the data dir is gone."""
        host = client.state.host if client.state is not None else None
        if host is None or client.disconnected_for() < LOST_AFTER_S or host.hostname != socket.gethostname():
            return None
        holder = lock_holder(Path(host.data_dir))
        if holder is not None and holder.get("pid") == host.pid:
            return None
        return f"its host ({host.command}, pid {host.pid}) ended without stopping it"

    def _on_state(self, state: HostState) -> None:
        self.post(LabChanged(lab_state(state)))
        self.post(HostChanged(state))

    def _on_notice(self, notice: Notice) -> None:
        message = notice_message(notice)
        if message is not None:
            self.post(message)

    async def poll_server(self) -> None:
        """Consumer info, the partitions and channel stats, one round at a time. The account rows come
        with the checker's passes (`run_checker`), from the same read as the verdicts they are shown beside."""
        client = self.ready()
        channels: dict[str, ChannelStats] | None = None
        while self.client is client:
            started = time.monotonic()
            try:
                if client.connected and client.nc is not None:
                    js = client.nc.jetstream()
                    for group in GROUPS:
                        info = await js.consumer_info(STREAM_NAME, group.name)
                        self.post(ConsumerInfoFetched(ConsumerView.from_info(info)))
                    self.post(PartitionsFetched(await partitions_seen(client.nc)))
                    channels = await channel_stats(client.nc, channels)
                    self.post(ChannelStatsFetched(channels, self.clock()))
            except POLL_ERRORS as exc:
                log.info("poll failed: %r", exc)
                self.post(PollFailed(describe_error(exc)))
            await asyncio.sleep(max(0.05, POLL_INTERVAL_S - (time.monotonic() - started)))

    async def run_checker(self) -> None:
        """The live checker, a pass about once a second and never two at once. Each pass reads only
        what is new, and posts the account rows it read and then its report: the account pane never
        shows a row newer than the expectation it is compared with."""
        client = self.ready()
        checker: LiveChecker | None = None
        while self.client is client:
            started = time.monotonic()
            if client.connected and client.nc is not None:
                if checker is None or checker.nc is not client.nc:
                    checker = LiveChecker(client.nc, self.settings.data_dir)
                if checker.reads_all:  # a pass over the whole history takes a while: say it runs
                    self.post(CheckStarted())
                try:
                    result = await checker.check()
                except POLL_ERRORS as exc:
                    log.info("check failed: %r", exc)
                    self.post(PollFailed(f"checker: {describe_error(exc)}"))
                    self.post(CheckFinished(None))
                else:
                    self.post(AccountsRead(result.guarded, result.naive, result.partitioned))
                    self.post(CheckFinished(result.report))
            await asyncio.sleep(max(0.05, CHECK_INTERVAL_S - (time.monotonic() - started)))

    async def history(self) -> list[StoredEvent]:
        client = self.ready()
        if client.nc is None:
            raise LabError("not attached to a lab")
        return await read_history(client.nc)

    # -- what the keys ask of the lab's host (what it did comes back as notices, to every dashboard) --

    async def publish(self, kind: str, user_id: str, amount_cents: int) -> None:
        await self.ready().request("publish", kind=kind, user=user_id, amount_cents=amount_cents)

    async def publish_burst(self, count: int) -> None:
        await self.ready().request("burst", count=count)

    async def control(self, action: Action, name: str, mode: str = "guarded") -> None:
        """`action` on listener `name`; `add` starts a listener of `mode` instead."""
        await self.ready().request("control", action=action, name=name, mode=mode)

    async def slow_user(self, user: str, ms: int) -> None:
        """Every event of `user` takes `ms` to process in every running listener (0: normal again)."""
        await self.ready().request("control", action="slow-user", name=user, slow_ms=ms)

    async def restart_server(self) -> None:
        await self.ready().request("restart-server")

    async def node_control(self, action: str, name: str) -> str:
        """Ask the host to break or mend a node; the host's first word (what it did comes as a notice)."""
        return str((await self.ready().request("node", action=action, name=name)).get("done", ""))

    async def set_trickle(self, on: bool) -> None:
        await self.ready().request("trickle", on=on)

    async def run_scenario(self, name: str, *, step_mode: bool = False) -> None:
        await self.ready().request("scenario", name=name, step_mode=step_mode)

    async def next_step(self) -> None:
        """Let a scenario in step mode go on past the caption it shows."""
        await self.ready().request("step")

    async def run_rest(self) -> None:
        """Leave step mode: the scenario runs its remaining steps without waiting."""
        await self.ready().request("run-rest")


def notice_message(notice: Notice) -> Message | None:
    """The app's message for what the lab's host says it did; None for what needs no message."""
    fields, kind = notice.fields, notice.kind
    text = str(fields.get("text", ""))
    if kind == "published":
        return EventPublished(notice.result())
    if kind == "burst":
        return BurstPublished(int(fields.get("count", 0)))
    if kind == "controlled":
        return ListenerControlled(text)
    if kind == "ended":
        return ListenerEnded(notice.member())
    if kind == "server-restarted":
        return ServerRestarted()
    if kind == "scenario-started":
        return ScenarioStarted(str(fields.get("name")), str(fields.get("summary")), bool(fields.get("step_mode")))
    if kind == "caption":
        return CaptionSaid(text, waiting=bool(fields.get("waiting")))
    if kind in ("resumed", "run-rest"):
        return ScenarioResumed(run_rest=kind == "run-rest")
    if kind == "scenario-finished":
        return ScenarioFinished(text)
    if kind == "scenario-failed":
        return ScenarioFailed(text)
    if kind == "failed":
        return JobFailed(str(fields.get("what", "a job")), text)
    if kind == "stopping":
        return LabLost(text)
    return None  # trickle: the state says it too
