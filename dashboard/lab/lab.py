"""The lab: the whole running system behind one object.

A `Lab` starts (or joins) the NATS server, declares the stream and both queue groups, opens the
publisher with its outbox relay, spawns the listener processes and follows their status. The dashboard,
the scenarios, the benchmark and the tests all drive the system through it; it never imports Textual.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError

from dashboard.lab.checker import CheckReport, read_accounts, run_check
from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.settings import Settings
from dashboard.lab.supervisor import Supervisor
from listeners.accounts import AccountRow, Mode, accounts_db_name
from listeners.groups import GROUPS, QueueGroup, ensure_consumer, group_for_mode
from listeners.status import STATUS_SUBJECT_PREFIX, control_subject
from publisher.events import STREAM_NAME, STREAM_SUBJECTS, channel_of_subject
from publisher.jetstream import connect, ensure_stream
from publisher.service import Publisher
from publisher.transactions import TransactionsDB

log = logging.getLogger(__name__)


class LabError(RuntimeError):
    """Something the lab cannot do, said in words a user understands."""


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate` until it holds; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def connect_with_retry(url: str, name: str, timeout: float = 10.0, **kwargs: Any) -> NATS:
    deadline = time.monotonic() + timeout
    while True:
        try:
            remaining = max(0.5, deadline - time.monotonic())
            return await connect(url, name, first_connect_timeout=min(2.0, remaining), **kwargs)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise LabError(f"cannot reach NATS at {url} (tried for {timeout:g} s)") from exc
            await asyncio.sleep(0.1)


async def nats_reachable(url: str, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections at the URL's host and port: worth trying to connect.

    A first connect to a dead server does not fail with endless reconnects configured, so callers
    that must tell a person "unreachable" probe first.
    """
    parsed = urlsplit(url if "://" in url else f"nats://{url}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def declare(nc: NATS, ack_wait_s: float, timeout: float = 10.0) -> None:
    """Declare the stream and both groups, retrying while JetStream finishes starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_stream(nc)
            for group in GROUPS:
                await ensure_consumer(nc, group, ack_wait_s)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise LabError(f"cannot declare the stream and consumers: {exc}") from exc
            await asyncio.sleep(0.1)


@dataclass(slots=True)
class ChannelStats:
    """One channel (`account:deposit`) of the stream: stored messages, last stream sequence, per user."""

    channel: str
    messages: int = 0
    last_seq: int = 0
    per_user: dict[str, int] = field(default_factory=dict)


class Lab:
    """Server, publisher, listener processes and their status, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: EmbeddedServer | None = None
        self.nc: NATS | None = None
        self.transactions: TransactionsDB | None = None
        self.publisher: Publisher | None = None
        self.supervisor: Supervisor | None = None
        self.statuses: dict[str, dict[str, Any]] = {}
        self.status_callbacks: list[Callable[[dict[str, Any]], None]] = []
        # Last counters of every listener process ever seen, so totals survive kills and restarts.
        self.process_counters: dict[tuple[str, int], dict[str, int]] = {}
        self.connected = False
        self.server_state = "stopped"
        self._relay_task: asyncio.Task | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise LabError("the lab has not been started")
        return self._url

    @property
    def embedded(self) -> bool:
        return self.server is not None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, *, listeners: int | None = None, naive: int | None = None) -> None:
        """Start everything; on failure, stop what was started (the caller gets the error, not a half lab)."""
        try:
            await self._start(listeners, naive)
        except BaseException:
            try:
                await self.stop()
            except Exception:  # the start's error is the one to report
                log.exception("stopping a lab that failed to start")
            raise

    async def _start(self, listeners: int | None, naive: int | None) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        if settings.nats_url:
            self._url = settings.nats_url
        else:
            self.server = EmbeddedServer(settings.store_dir, settings.logs_dir / "nats-server.log")
            self.server_state = "starting"
            self._url = await self.server.start()
            settings.url_file.write_text(self._url + "\n")
        self.server_state = "running"
        self.nc = await connect_with_retry(
            self._url, "natslab-dashboard", on_disconnect=self._on_disconnect, on_reconnect=self._on_reconnect
        )
        self.connected = True
        await declare(self.nc, settings.ack_wait_s)
        await self.nc.subscribe(f"{STATUS_SUBJECT_PREFIX}.*", cb=self._on_status)
        self.transactions = await TransactionsDB.open(settings.transactions_db)
        self.publisher = Publisher(self.transactions, self.nc)
        self._relay_task = asyncio.create_task(self.publisher.run_relay(), name="outbox-relay")
        self.supervisor = Supervisor(
            self._url,
            settings.data_dir,
            ack_wait_s=settings.ack_wait_s,
            defer=settings.defer,
            batch=settings.batch,
            nats_timeout_s=settings.nats_timeout_s,
        )
        for _ in range(settings.listeners if listeners is None else listeners):
            self.supervisor.spawn("guarded")
        for _ in range(settings.naive if naive is None else naive):
            self.supervisor.spawn("naive")

    async def stop(self) -> None:
        """Stop what this lab started: listeners, relay, connection, database, server. Every part is
        stopped even when an earlier one fails (the first error is raised at the end)."""
        errors: list[Exception] = []
        for step in (self._stop_listeners, self._stop_relay, self._close_nats, self._close_transactions, self._stop_server):
            try:
                await step()
            except Exception as exc:
                log.warning("stopping the lab: %s failed: %r", step.__name__, exc)
                errors.append(exc)
        if errors:
            raise errors[0]

    async def _stop_listeners(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop_all()

    async def _stop_relay(self) -> None:
        task, self._relay_task = self._relay_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _close_nats(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception as exc:  # the server may be gone already
                log.debug("close: %r", exc)

    async def _close_transactions(self) -> None:
        transactions, self.transactions = self.transactions, None
        if transactions is not None:
            await transactions.close()

    async def _stop_server(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.settings.url_file.unlink(missing_ok=True)
            self.server_state = "stopped"

    async def restart_server(self) -> None:
        """Stop and start the embedded server on the same port with the same store."""
        if self.server is None:
            raise LabError("the NATS server is external (--nats-url); natslab can restart only its own server")
        self.server_state = "restarting"
        await self.server.stop()
        self.server_state = "down"
        await self.server.start()
        self.server_state = "running"

    async def _on_disconnect(self) -> None:
        self.connected = False

    async def _on_reconnect(self) -> None:
        self.connected = True

    # -- status and control ------------------------------------------------------------------------

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = json.loads(msg.data)
            name = str(status["name"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed status on %s", msg.subject)
            return
        self.statuses[name] = status
        counters = status.get("counters")
        if isinstance(counters, dict):
            self.process_counters[(name, int(status.get("pid", 0)))] = counters
        for callback in self.status_callbacks:
            callback(status)

    async def send_control(self, name: str, command: str, timeout: float = 2.0) -> str:
        """Send a fault-injection command; returns the listener's reply."""
        if self.nc is None:
            raise LabError("not connected")
        try:
            reply = await self.nc.request(control_subject(name), command.encode(), timeout=timeout)
        except Exception as exc:
            raise LabError(f"listener {name} did not answer {command!r}: {exc!r}") from exc
        text = reply.data.decode()
        if text != "ok":
            raise LabError(f"listener {name}: {text}")
        return text

    # -- observations ------------------------------------------------------------------------------

    async def consumer_info(self, group: QueueGroup) -> api.ConsumerInfo:
        assert self.nc is not None
        return await self.nc.jetstream().consumer_info(STREAM_NAME, group.name)

    async def stream_info(self) -> api.StreamInfo:
        assert self.nc is not None
        return await self.nc.jetstream().stream_info(STREAM_NAME)

    async def channel_stats(self, previous: dict[str, ChannelStats] | None = None) -> dict[str, ChannelStats]:
        """Per channel: stored messages, messages per user and the last stream sequence.

        The counts come from the stream's per-subject state; the last sequence costs one look-up per
        channel, skipped when `previous` (the last answer) shows the channel has not grown.
        """
        assert self.nc is not None
        js = self.nc.jetstream()
        info = await js.stream_info(STREAM_NAME, subjects_filter=">")
        stats = {channel_of_subject(pattern): ChannelStats(channel_of_subject(pattern)) for pattern in STREAM_SUBJECTS}
        for subject, count in (info.state.subjects or {}).items():
            entry = stats.get(channel_of_subject(subject))
            if entry is None:
                continue
            user = subject.rsplit(".", 1)[-1]
            entry.per_user[user] = entry.per_user.get(user, 0) + count
            entry.messages += count
        for pattern in STREAM_SUBJECTS:
            entry = stats[channel_of_subject(pattern)]
            known = (previous or {}).get(entry.channel)
            if entry.messages == 0:
                continue
            if known is not None and known.messages == entry.messages and known.last_seq:
                entry.last_seq = known.last_seq
                continue
            try:
                entry.last_seq = (await js.get_last_msg(STREAM_NAME, pattern)).seq or 0
            except NotFoundError:  # purged between the two requests
                entry.last_seq = 0
        return stats

    async def accounts(self, mode: Mode) -> list[AccountRow]:
        """The account table, read without writing (it is polled a few times a second)."""
        accounts = await read_accounts(self.settings.data_dir / accounts_db_name(mode))
        return [AccountRow(user, last, balance) for user, (last, balance) in sorted(accounts.items())]

    async def check(self) -> CheckReport:
        assert self.nc is not None
        return await run_check(self.nc, self.settings.data_dir)

    def check_server(self) -> None:
        """Raise LabError when the embedded server has died without being stopped or restarted by us:
        waiting for the system to make progress is then pointless."""
        server = self.server
        if server is not None and self.server_state == "running" and server.exit_code is not None:
            raise LabError(
                f"the embedded nats-server (pid {server.pid}) ended by itself with code {server.exit_code};"
                f" see {server.log_file}"
            )

    async def drained(self, modes: tuple[Mode, ...] = ("guarded", "naive")) -> bool:
        """Nothing left to publish, and every event of each running group delivered and acknowledged."""
        self.check_server()
        if self.transactions is not None and await self.transactions.count_unpublished():
            return False
        assert self.supervisor is not None
        try:
            for mode in modes:
                if not any(entry.alive for entry in self.supervisor.members(mode)):
                    continue
                info = await self.consumer_info(group_for_mode(mode))
                if info.num_pending or info.num_ack_pending:
                    return False
        except Exception as exc:  # the server may be restarting: not drained yet
            log.debug("drained: %r", exc)
            return False
        return True

    async def wait_drained(self, timeout: float = 60.0, modes: tuple[Mode, ...] = ("guarded", "naive")) -> None:
        await wait_until(lambda: self.drained(modes), timeout, "the listeners to drain", interval=0.1)

    def total_counter(self, key: str, mode: Mode | None = None) -> int:
        """A listener counter (applied, redelivered, ...) summed over every process seen, dead ones too."""
        total = 0
        for (name, _pid), counters in self.process_counters.items():
            if mode is not None and (self.statuses.get(name) or {}).get("mode") != mode:
                continue
            total += int(counters.get(key, 0))
        return total
