"""The Account Service listener: one process of a queue group.

The consumer loop fetches batches from the group's durable pull consumer, hands them to the account
database in one transaction, and only then acknowledges: `ack` for applied, rejected and duplicate
events, `nak` with a growing delay for early ones (or nothing, with `--defer ack-wait`, so the ack wait
brings them back), `term` for poison. It survives server restarts (the client reconnects and the loop
fetches again), drains on SIGTERM, publishes its status, and obeys fault-injection commands.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError, ServiceUnavailableError

from listeners.accounts import AccountsDB, Mode, accounts_db_name
from listeners.activity import Activity
from listeners.batches import HOLD_RECHECK_S, BatchHandler
from listeners.faults import Faults
from listeners.fetching import fetch_promptly
from listeners.groups import DEFAULT_ACK_WAIT_S, QueueGroup, ensure_consumer, group_for_mode
from listeners.guard import GAP_TIMEOUT_ACK_WAITS, SequenceGuard
from listeners.partitioned import PartitionedConsumer
from listeners.partitions import DEFAULT_PARTITIONS
from listeners.status import STATUS_INTERVAL_S, ListenerStatus, control_subject, status_subject
from publisher.credentials import redact_url
from publisher.events import STREAM_NAME, utc_now_iso
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S, NatsRefused, connect, ensure_stream

log = logging.getLogger(__name__)

DeferMode = Literal["nak", "ack-wait"]
# A status loop that wakes up this much later than it should has been frozen (SIGSTOP, a paused lab).
FROZEN_GAP_S = 5.0


@dataclass(slots=True)
class ListenerConfig:
    name: str
    mode: Mode
    nats_url: str
    data_dir: Path
    ack_wait_s: float = DEFAULT_ACK_WAIT_S
    defer: DeferMode = "nak"
    batch: int = 100
    fetch_timeout_s: float = 1.0
    slow_ms: int = 0
    parent_pid: int | None = None
    nats_timeout_s: float = DEFAULT_NATS_TIMEOUT_S
    # How long a user may be stuck waiting for a missing number before its early events are parked.
    gap_timeout_s: float | None = None  # None: GAP_TIMEOUT_ACK_WAITS ack waits
    # The partitioned group only: how many partitions the users are split into, and those this
    # listener pulls from the start (listeners/partitioned.py).
    partitions: int = DEFAULT_PARTITIONS
    home: tuple[int, ...] = ()

    @property
    def gap_timeout(self) -> float:
        return self.gap_timeout_s if self.gap_timeout_s is not None else GAP_TIMEOUT_ACK_WAITS * self.ack_wait_s

    @property
    def group(self) -> QueueGroup:
        return group_for_mode(self.mode)

    @property
    def db_path(self) -> Path:
        return self.data_dir / accounts_db_name(self.mode)


class Reachability:
    """How long NATS has been unreachable, not counting time this process was frozen (SIGSTOP): a
    frozen client has had no chance to reconnect."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._last_checked = time.monotonic()

    def lost(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def back(self) -> None:
        self._since = None

    def lost_for(self) -> float:
        """Seconds since the connection was lost (0 while connected); call it regularly."""
        now = time.monotonic()
        if self._since is not None and now - self._last_checked > FROZEN_GAP_S:
            self._since = now  # this process was frozen meanwhile
        self._last_checked = now
        return 0.0 if self._since is None else now - self._since


class AccountListener:
    """One member of a queue group, applying account events to its account database."""

    def __init__(self, config: ListenerConfig) -> None:
        self.config = config
        self.guard = SequenceGuard(max_delay_s=max(0.05, min(0.5, config.ack_wait_s / 2)), gap_timeout_s=config.gap_timeout)
        self.activity = Activity()
        self.fault = Faults(slow_ms=config.slow_ms)
        self.state = "starting"
        self.connected = False
        self._stop = asyncio.Event()
        self._status_wake = asyncio.Event()
        self._nc: NATS | None = None
        self._batches: BatchHandler | None = None
        self._partitioned: PartitionedConsumer | None = None
        self._db: AccountsDB | None = None
        # Why the listener stopped by itself (NATS unreachable for too long); None when it was told to.
        self.failure: str | None = None
        self._reachability = Reachability()

    # -- lifecycle ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.state = "draining"
        self._stop.set()
        self.fault.slow_changed.set()

    async def run(self) -> None:
        """Consume until stopped. `failure` says why, when the listener stopped by itself."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                pass
        db = self._db = await AccountsDB.open(self.config.db_path)
        self._batches = BatchHandler(self.config, db, self.guard, self.fault, self.activity, self._status_wake, self._stop)
        try:
            self._nc = await self._connect()
            if self._nc is not None:
                await self._serve(self._nc, self._batches)
        finally:
            await db.close()

    async def _serve(self, nc: NATS, batches: BatchHandler) -> None:
        self.connected = True
        status_task = asyncio.create_task(self._status_loop(), name="status")
        try:
            await nc.subscribe(control_subject(self.config.name), cb=self._on_control)
            if self.config.mode == "partitioned":
                await self._consume_partitioned(nc)
            else:
                await self._consume(batches)
                await batches.release_held()
        finally:
            self.state = "stopped"
            status_task.cancel()
            try:
                await self._publish_status()
                # Acks are already sent; flush them out rather than drain, which waits on the pull inbox.
                await nc.flush(timeout=2)
            except Exception:  # the server may be gone; closing is best effort
                log.debug("flush failed", exc_info=True)
            await nc.close()
            log.info("listener %s stopped", self.config.name)

    async def _connect(self) -> NATS | None:
        """Connect, retrying while the server is down (it may be restarting as we start); give up
        after `nats_timeout_s`, or at once when the server refuses the credentials, with `failure` set."""
        deadline = time.monotonic() + self.config.nats_timeout_s
        while not self._stop.is_set():
            try:
                return await connect(
                    self.config.nats_url,
                    f"natslab-listener-{self.config.name}",
                    on_disconnect=self._on_disconnect,
                    on_reconnect=self._on_reconnect,
                )
            except NatsRefused as exc:
                self.failure = str(exc)
                log.error("%s", exc)
                return None
            except (ConnectionError, OSError, NatsError) as exc:
                log.warning("cannot connect yet: %r", exc)
                if time.monotonic() > deadline:
                    self.failure = f"cannot reach {self._where} (tried for {self.config.nats_timeout_s:g} s)"
                    return None
                self.state = "disconnected"
                await self._sleep(0.5)
        return None

    @property
    def _where(self) -> str:
        return f"NATS at {redact_url(self.config.nats_url)}"

    async def _on_disconnect(self) -> None:
        self.connected = False
        self._reachability.lost()
        self._status_wake.set()

    async def _on_reconnect(self) -> None:
        self.connected = True
        self._reachability.back()
        self._status_wake.set()

    def _give_up_if_unreachable(self) -> None:
        """Stop, with `failure` set, once NATS has been unreachable for `nats_timeout_s`."""
        if self._reachability.lost_for() > self.config.nats_timeout_s and not self._stop.is_set():
            self.failure = f"{self._where} unreachable for {self.config.nats_timeout_s:g} s"
            log.warning("%s; stopping", self.failure)
            self.request_stop()

    # -- consuming ---------------------------------------------------------------------------------

    async def _bind(self):
        assert self._nc is not None
        await ensure_stream(self._nc)
        await ensure_consumer(self._nc, self.config.group, self.config.ack_wait_s)
        return await self._nc.jetstream().pull_subscribe_bind(
            durable=self.config.group.name, stream=STREAM_NAME
        )

    async def _consume(self, batches: BatchHandler) -> None:
        sub = None
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if sub is None:
                    sub = await self._bind()
                    self.state = "running"
                    self._status_wake.set()
                # When slowed, take one event at a time so the delay is per event, as a person expects.
                batch = 1 if self.fault.slow_ms else self.config.batch
                # Holding early events, come back soon to see whether their predecessors arrived.
                timeout = HOLD_RECHECK_S if batches.holding else self.config.fetch_timeout_s
                msgs = await fetch_promptly(sub, batch, timeout)
            except asyncio.TimeoutError:
                # A fetch that waited its time out was taken by a consumer leader: nothing came, all is well.
                if self.state in ("reconnecting", "no leader") and self._nc is not None and self._nc.is_connected:
                    self.state = "running"
                if batches.holding:
                    await batches.handle([])
                continue
            except NotFoundError:
                log.warning("stream or consumer missing; declaring them again")
                sub = None
                await self._sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception as exc:  # connection trouble: the client reconnects, we fetch again
                if self._stop.is_set():
                    break
                log.warning("fetch failed: %r", exc)
                self._trouble(exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            if self.state in ("reconnecting", "no leader"):
                self.state = "running"
            if msgs:
                await batches.handle(msgs)

    async def _consume_partitioned(self, nc: NATS) -> None:
        """Declare the partitioned stream and consumers, then pull the partitions until stopped."""
        config, db = self.config, self._db
        assert db is not None
        consumer = PartitionedConsumer(
            nc,
            config,
            self.fault,
            lambda p: BatchHandler(config, db, self.guard, self.fault, self.activity, self._status_wake, self._stop, p),
            self._stop,
            self._status_wake,
        )
        self.failure = await consumer.declare(self._trouble)
        if self.failure is not None:
            self.request_stop()
            return
        self._partitioned = consumer
        self.state = "running"
        self._status_wake.set()
        await consumer.run()

    def _trouble(self, exc: Exception) -> None:
        """No leader answers for the consumer (a cluster electing one), or the connection is down."""
        self.state = "no leader" if isinstance(exc, (ServiceUnavailableError, NoRespondersError)) else "reconnecting"
        self._status_wake.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    # -- control and status ------------------------------------------------------------------------

    async def _on_control(self, msg: Msg) -> None:
        text = msg.data.decode("utf-8", "replace")
        reply = self.fault.apply(text)
        if reply == "ok":
            log.info("control: %s", text)
            self._status_wake.set()
        if msg.reply:
            await msg.respond(reply.encode())

    def status(self) -> ListenerStatus:
        """This listener's status; the deliveries settled since the last call go with it, once."""
        state = self.state
        if state == "running" and self.fault.slow_ms:
            state = "slow"
        if not self.connected and state not in ("stopped", "draining"):
            state = "disconnected"
        return ListenerStatus(
            name=self.config.name,
            pid=os.getpid(),
            mode=self.config.mode,
            group=self.config.group.name,
            state=state,
            defer=self.config.defer,
            **self.fault.status_fields(),
            **self.activity.status_fields(self._partitioned.waiting() if self._partitioned is not None else None),
            partitions=self._partitioned.owned() if self._partitioned is not None else {},
            ts=utc_now_iso(),
        )

    async def _publish_status(self) -> None:
        if self._nc is None or not self._nc.is_connected:
            return
        await self._nc.publish(status_subject(self.config.name), self.status().to_json())

    async def _status_loop(self) -> None:
        parent = self.config.parent_pid
        while True:
            try:
                await asyncio.wait_for(self._status_wake.wait(), timeout=STATUS_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self._status_wake.clear()
            if parent is not None and os.getppid() != parent:
                log.warning("parent %d is gone; stopping", parent)
                self.request_stop()
            self._give_up_if_unreachable()
            try:
                await self._publish_status()
            except Exception as exc:
                log.debug("status publish failed: %r", exc)
            # Bound the status rate under load; outcomes accumulate and go out with the next message.
            await asyncio.sleep(0.05)
