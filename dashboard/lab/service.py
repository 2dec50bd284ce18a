"""The lab as a service: the host's side of the protocol in `dashboard.lab.protocol`.

A `LabService` serves one running `Lab` over NATS. Every key a dashboard offers that acts on the lab
(publish, burst, trickle, kill, pause, restart, crash, slow, add, server restart, a scenario and its
steps) arrives here as a request and is carried out on the host, so it works the same from any
dashboard attached to the lab, from this machine or another that reaches the server. What it did goes
out as a notice, and the host's state at every change and once a second, so every dashboard shows the
same lab.

Each request is handled in a task of its own: a slow one (a publish waiting for its PubAck, a
scenario) never holds up a kill. Scenarios run here, on the host, so a scenario started from one
dashboard is followed (and stepped through) by all of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dashboard.lab.lab import Lab, LabState
from dashboard.lab.protocol import (
    CONTROL_SUBJECT,
    HEARTBEAT_S,
    NOTICE_SUBJECT,
    STATE_SUBJECT,
    HostInfo,
    HostState,
    LabRequestError,
    Notice,
    ProtocolError,
    parse_request,
    reply_error,
    reply_ok,
    result_fields,
)
from dashboard.lab.scenario_runner import ScenarioRunner
from dashboard.lab.supervisor import Member
from dashboard.lab.traffic import TRICKLE_RATE, record_random, trickle, user_names
from dashboard.lab.waits import LabError, cancel, describe_error
from listeners.accounts import Mode
from listeners.outcomes import MODES
from publisher.credentials import redact_url
from publisher.service import Publisher

log = logging.getLogger(__name__)

# How long a node request's reply has to reach the asker before the node is broken.
NODE_GRACE_S = 0.2
# The users of `b` (a burst) and `t` (the trickle).
BURST_USERS = tuple(user_names(5))
MAX_BURST = 10_000
KINDS = ("deposit", "withdraw")


class LabService:
    """Answers the control subject for one lab, and broadcasts its state and what it did."""

    def __init__(
        self,
        lab: Lab,
        command: str,
        *,
        on_stop: Callable[[str], object] | None = None,
        caption_read_s: float | None = None,
    ) -> None:
        self.lab = lab
        self.command = command
        # Called with the reason when `natslab down` (or any client) asks the lab to stop; the owner
        # of the lab stops it (and this service) from there.
        self.on_stop = on_stop
        read_s = min(1.0, lab.settings.ack_wait_s / 4) if caption_read_s is None else caption_read_s
        self.scenarios = ScenarioRunner(lab, self.notice, self.changed, read_s)
        self.trickle = Trickle(self.notice, self.changed)
        self._jobs: set[asyncio.Task] = set()
        self._outgoing: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._dirty = asyncio.Event()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        nc = self.lab.nc
        if nc is None:
            raise LabError("the lab has not been started")
        self.lab.on_change.append(self._on_change)
        self.lab.on_ended.append(self._on_ended)
        self._sub = await nc.subscribe(CONTROL_SUBJECT, cb=self._on_request)
        self._tasks = [
            asyncio.create_task(self._send(), name="lab-service-send"),
            asyncio.create_task(self._heartbeat(), name="lab-service-heartbeat"),
        ]
        await nc.flush(timeout=5)
        log.info("serving the lab on %s (%s, pid %d)", CONTROL_SUBJECT, self.command, os.getpid())

    async def stop(self, reason: str) -> None:
        """Stop answering: say so to every dashboard, end the trickle, the scenario and running jobs.
        The lab itself is its owner's to stop."""
        if self._stopped:
            return
        self._stopped = True
        for callbacks, callback in ((self.lab.on_change, self._on_change), (self.lab.on_ended, self._on_ended)):
            if callback in callbacks:
                callbacks.remove(callback)
        await self.scenarios.stop()
        for task in (self.trickle.task, *self._jobs):
            await cancel(task)
        self.notice("stopping", text=reason)
        self._outgoing.put_nowait(None)  # the sender ends after what is queued
        sender, heartbeat = self._tasks or (None, None)
        await cancel(heartbeat)
        if sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(sender), 2.0)
            except (asyncio.TimeoutError, Exception) as exc:
                log.debug("sending the last notices: %r", exc)
            await cancel(sender)
        nc = self.lab.nc
        try:
            if self._sub is not None:
                await self._sub.unsubscribe()
            if nc is not None and nc.is_connected:
                await nc.flush(timeout=2)
        except Exception as exc:  # the server may be gone already
            log.debug("unsubscribing the lab service: %r", exc)

    # -- what goes out -----------------------------------------------------------------------------

    def state(self) -> HostState:
        lab_state = self.lab.state()
        return HostState(
            host_info(self.lab, self.command),
            lab_state.members,
            lab_state.server_state,
            lab_state.connected,
            lab_state.outbox_error,
            self.trickle.running,
            self.scenarios.state,
            tuple((name, pid, mode, counts.to_json()) for name, pid, mode, counts in self.lab.counts.entries()),
            lab_state.nodes,
        )

    def notice(self, kind: str, **fields: Any) -> None:
        self._outgoing.put_nowait((NOTICE_SUBJECT, Notice(kind, fields).to_json()))

    def changed(self) -> None:
        """The state changed: it goes out now rather than at the next heartbeat."""
        self._dirty.set()

    def _on_change(self, _: LabState) -> None:
        self.changed()

    def _on_ended(self, member: Member) -> None:
        self.notice("ended", member=_member_fields(member))

    async def _heartbeat(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                pass
            self._dirty.clear()
            self._outgoing.put_nowait((STATE_SUBJECT, self.state().to_json()))

    async def _send(self) -> None:
        """One sender, so notices and states go out in the order they happened."""
        while (item := await self._outgoing.get()) is not None:
            nc = self.lab.nc
            if nc is None:
                continue
            try:
                await nc.publish(*item)
            except Exception as exc:  # closed or reconnecting beyond its buffer: the next heartbeat repeats the state
                log.debug("publishing on %s: %r", item[0], exc)

    # -- requests ----------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        job = asyncio.create_task(self._answer(msg), name="lab-request")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            op, fields = parse_request(msg.data)
            reply = await self.handle(op, fields)
        except (ProtocolError, LabError, LabRequestError, ValueError, TimeoutError) as exc:
            reply = reply_error(describe_error(exc))
        except Exception as exc:
            log.exception("answering a lab request")
            reply = reply_error(f"the lab failed: {describe_error(exc)}")
        if msg.reply:
            try:
                await msg.respond(reply)
            except Exception as exc:
                log.debug("replying: %r", exc)

    async def handle(self, op: str, fields: dict[str, Any]) -> bytes:
        """Carry out one request; its reply. Errors the requester should read are raised as LabError."""
        lab = self.lab
        if op == "ping":
            return reply_ok("pong", state=self.state().to_dict())
        if op == "control":
            done = await lab.control(
                _text(fields, "action"), str(fields.get("name", "")), mode=_mode(fields),  # type: ignore[arg-type]
                **_slow_ms(fields),
            )
            self.notice("controlled", text=done)
            self.changed()
            return reply_ok(done)
        if op == "node":
            # After the reply: the node may be the one this host's connection, or the asker's, goes through.
            action, name = _text(fields, "action"), _text(fields, "name")
            self._spawn(self._node_control(action, name), f"{action} node {name}")
            return reply_ok(f"{action} node {name}: asked; the nodes pane shows what follows")
        if op == "publish":
            kind = _text(fields, "kind")
            if kind not in KINDS:
                raise LabError(f"kind must be deposit or withdraw, not {kind!r}")
            amount = fields.get("amount_cents")
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise LabError("amount_cents must be a whole number of cents")
            result = await self._publisher().publish(kind, _text(fields, "user"), amount)
            self.notice("published", result=result_fields(result))
            return reply_ok(result.where())
        if op == "burst":
            count = fields.get("count")
            if not isinstance(count, int) or not 1 <= count <= MAX_BURST:
                raise LabError(f"a burst is 1 to {MAX_BURST} events")
            await record_random(self._publisher(), random.Random(), BURST_USERS, count)
            self.notice("burst", count=count)
            return reply_ok(f"{count} events recorded")
        if op == "trickle":
            return reply_ok(**await self.trickle.set(self._publisher(), bool(fields.get("on"))))
        if op == "restart-server":
            if lab.server is None:
                raise LabError("the NATS server is external (--nats-url); natslab can restart only its own server")
            self._spawn(self._restart_server(), "restarting the NATS server")
            return reply_ok("restarting the NATS server")
        if op == "scenario":
            return reply_ok(self.scenarios.start(_text(fields, "name"), bool(fields.get("step_mode"))))
        if op == "step":
            return reply_ok(self.scenarios.next_step())
        if op == "run-rest":
            return reply_ok(self.scenarios.run_rest())
        if op == "stop":
            reason = str(fields.get("reason") or "stopped on request")
            if self.on_stop is None:
                raise LabError(f"this lab ({self.command}) cannot be stopped from outside")
            asyncio.get_running_loop().call_soon(self.on_stop, reason)  # after the reply went out
            return reply_ok("stopping")
        raise ProtocolError(f"unknown operation {op!r}")

    def _publisher(self):
        if self.lab.publisher is None:
            raise LabError("the lab has not been started")
        return self.lab.publisher

    def _spawn(self, job, what: str) -> None:
        """Run `job` after the reply; its failure goes to every dashboard as a notice."""

        async def run() -> None:
            await asyncio.sleep(0)  # the reply first
            try:
                await job
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed: %r", what, exc)
                self.notice("failed", what=what, text=describe_error(exc))

        task = asyncio.create_task(run(), name=what)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _restart_server(self) -> None:
        nc = self.lab.nc
        if nc is not None:
            await nc.flush(timeout=2)  # the reply and the notices so far reach the dashboards first
        await self.lab.restart_server()
        self.notice("server-restarted")

    async def _node_control(self, action: str, name: str) -> None:
        """After the reply has had time to reach the asker through the node (it may be the one its
        connection goes through). What was done reaches every dashboard in the state (the nodes); a
        notice could come late, from a host whose own node was paused, and say the wrong thing."""
        nc = self.lab.nc
        if nc is not None:
            await nc.flush(timeout=2)
        await asyncio.sleep(NODE_GRACE_S)
        await self.lab.node_control(action, name)



class Trickle:
    """The lab's trickle of random events (`t`), one for every dashboard; `notice` and `changed` are
    the service's."""

    def __init__(self, notice: Callable[..., None], changed: Callable[[], None]) -> None:
        self.notice = notice
        self.changed = changed
        self.task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def set(self, publisher: Publisher, on: bool) -> dict[str, Any]:
        if on and not self.running:
            self.task = asyncio.create_task(
                trickle(publisher, random.Random(), BURST_USERS, TRICKLE_RATE), name="trickle"
            )
            self.task.add_done_callback(self._ended)
        elif not on and self.running:
            await cancel(self.task)
        self.notice("trickle", on=on)
        self.changed()
        done = f"trickle: {TRICKLE_RATE:g} random events a second" if on else "trickle stopped"
        return {"done": done, "on": on}

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.notice("failed", what="the trickle", text=describe_error(task.exception()))  # type: ignore[arg-type]
            self.notice("trickle", on=False)
        self.changed()

def host_info(lab: Lab, command: str) -> HostInfo:
    """Who hosts `lab` (this process, as `command`), and what a dashboard needs to show it."""
    settings = lab.settings
    return HostInfo(
        pid=os.getpid(),
        hostname=socket.gethostname(),
        command=command,
        data_dir=str(settings.data_dir.absolute()),
        url=redact_url(lab.url),  # every dashboard shows it, and anyone on the server hears it
        embedded=lab.server is not None,
        sync=settings.sync if lab.server is not None else None,
        ack_wait_s=settings.ack_wait_s,
    )


def _text(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise LabError(f"the request needs {key!r}")
    return value


def _slow_ms(fields: dict[str, Any]) -> dict[str, int]:
    """`slow_ms` when the request gives one (a whole number of ms, 0 to 3,600,000)."""
    if "slow_ms" not in fields:
        return {}
    value = fields["slow_ms"]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3_600_000:
        raise LabError(f"slow_ms must be a whole number of milliseconds up to 3600000, not {value!r}")
    return {"slow_ms": value}


def _mode(fields: dict[str, Any]) -> Mode:
    mode = fields.get("mode", "guarded")
    if mode not in MODES:
        raise LabError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def _member_fields(member: Member) -> dict[str, Any]:
    return asdict(member)
