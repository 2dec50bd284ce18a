"""A dashboard's side of the lab protocol (`dashboard.lab.protocol`): attached to a lab that some
host runs, by NATS alone.

A `LabClient` has its own connection to the lab's server. On it, it hears the listeners' statuses,
the host's state and the host's notices, and sends the host requests. It knows the host is gone when
the host said it stops, or when nothing came from it for `SILENT_AFTER_S` while the connection was up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from dashboard.lab.protocol import (
    CONTROL_SUBJECT,
    NOTICE_SUBJECT,
    REQUEST_TIMEOUT_S,
    SILENT_AFTER_S,
    STATE_SUBJECT,
    HostState,
    Notice,
    ProtocolError,
    parse_reply,
    request,
)
from dashboard.lab.waits import LabError, close_quietly, connect_with_retry, nats_reachable
from listeners.status import STATUS_SUBJECT_PREFIX, ListenerStatus, read_status
from publisher.credentials import redact_url

log = logging.getLogger(__name__)

# How long finding out whether a lab answers may take, from the first TCP probe to the reply.
PING_TIMEOUT_S = 2.0


class LabTimeout(LabError):
    """The host did not answer in time: it may have done what was asked (the answer was lost)."""


class NoLab(LabError):
    """No lab answers at the URL (or there is no URL to try)."""


class LabStarting(NoLab):
    """No lab answers yet, but a process holds the data dir's lock: its lab is starting."""


async def ask(nc: NATS, url: str, op: str, timeout: float = REQUEST_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
    """Send the host one request; its reply's fields. NoLab when no lab answers, LabError with the
    host's own words when it refuses."""
    where = redact_url(url)
    try:
        msg = await nc.request(CONTROL_SUBJECT, request(op, **fields), timeout=timeout)
    except NoRespondersError:
        raise NoLab(f"no lab answers at {where}") from None
    except (NatsTimeoutError, TimeoutError):
        raise LabTimeout(f"the lab at {where} did not answer within {timeout:g} s") from None
    try:
        return parse_reply(msg.data)
    except ProtocolError as exc:
        raise LabError(f"a reply from {where} that is not the lab's: {exc}") from None


async def ping(url: str, timeout: float = PING_TIMEOUT_S) -> HostState | None:
    """The state of the lab that answers at `url`, or None when nothing does (no server, no lab)."""
    if not await nats_reachable(url, timeout=min(1.0, timeout)):
        return None
    try:
        nc = await connect_with_retry(url, "natslab-ping", timeout=timeout)
    except LabError:
        return None
    try:
        reply = await ask(nc, url, "ping", timeout=timeout)
        return HostState.from_dict(reply.get("state"))
    except (LabError, ProtocolError) as exc:
        log.debug("ping %s: %r", redact_url(url), exc)
        return None
    finally:
        await close_quietly(nc)


class LabClient:
    """One dashboard's connection to a lab: what the lab says, and requests to its host."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: NATS | None = None
        self.state: HostState | None = None
        self.connected = False
        self.stopped: str | None = None  # why the host said it stops
        self.on_status: list[Callable[[ListenerStatus], object]] = []
        self.on_state: list[Callable[[HostState], object]] = []
        self.on_notice: list[Callable[[Notice], object]] = []
        self.on_connection: list[Callable[[bool], object]] = []
        self._last_heard = time.monotonic()
        self._disconnected_at: float | None = None

    async def attach(self, timeout: float = 10.0) -> HostState:
        """Connect, hear everything, and ping the host; its state (NoLab when none answers)."""
        self.nc = await connect_with_retry(
            self.url, "natslab-dashboard", timeout=timeout,
            on_disconnect=self._on_disconnect, on_reconnect=self._on_reconnect,
        )  # fmt: skip
        self.connected = True
        try:
            await self.nc.subscribe(f"{STATUS_SUBJECT_PREFIX}.*", cb=self._on_status)
            await self.nc.subscribe(STATE_SUBJECT, cb=self._on_state)
            await self.nc.subscribe(NOTICE_SUBJECT, cb=self._on_notice)
            reply = await ask(self.nc, self.url, "ping")
            state = HostState.from_dict(reply.get("state"))
        except BaseException:
            await self.close()
            raise
        self._heard(state)
        return state

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        self.connected = False
        if nc is not None:
            await close_quietly(nc)

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        if self.nc is None:
            raise LabError("not attached to a lab")
        if not self.connected:
            raise LabError(f"not connected to NATS at {redact_url(self.url)}")
        return await ask(self.nc, self.url, op, timeout, **fields)

    def gone(self) -> str | None:
        """Why the host is taken for gone, or None while it answers (or may: a server restarting)."""
        if self.stopped is not None:
            return self.stopped
        silent = time.monotonic() - self._last_heard
        if self.connected and silent > SILENT_AFTER_S:
            return f"the lab's host has not been heard from for {silent:.0f} s"
        return None

    def disconnected_for(self) -> float:
        """How long the connection has been down (0 while it is up)."""
        return 0.0 if self._disconnected_at is None else time.monotonic() - self._disconnected_at

    # -- what arrives ------------------------------------------------------------------------------

    def _heard(self, state: HostState) -> None:
        self._last_heard = time.monotonic()
        self.state = state
        for callback in self.on_state:
            callback(state)

    async def _on_state(self, msg: Msg) -> None:
        try:
            self._heard(HostState.from_json(msg.data))
        except ProtocolError as exc:
            log.warning("a lab state that does not parse: %s", exc)

    async def _on_notice(self, msg: Msg) -> None:
        try:
            notice = Notice.from_json(msg.data)
        except ProtocolError as exc:
            log.warning("a lab notice that does not parse: %s", exc)
            return
        self._last_heard = time.monotonic()
        if notice.kind == "stopping":
            self.stopped = str(notice.fields.get("text") or "the lab stopped")
        for callback in self.on_notice:
            callback(notice)

    async def _on_status(self, msg: Msg) -> None:
        status = read_status(msg.data, msg.subject)
        if status is None:
            return
        for callback in self.on_status:
            callback(status)

    async def _on_disconnect(self) -> None:
        self.connected = False
        self._disconnected_at = time.monotonic()
        for callback in self.on_connection:
            callback(False)

    async def _on_reconnect(self) -> None:
        self.connected = True
        self._disconnected_at = None
        self._last_heard = time.monotonic()  # the host's heartbeats resume now; silence before does not count
        for callback in self.on_connection:
            callback(True)
