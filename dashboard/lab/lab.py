"""The lab: the whole running system behind one object.

A `Lab` starts (or joins) the NATS server, declares the stream and both queue groups, opens the
publisher with its outbox relay, spawns the listener processes and follows their status. The dashboard,
the scenarios, chaos runs, the benchmark and the tests all drive the system through it, and break it
through `Lab.control`; it never imports Textual.

Observers register callbacks (`on_status`, `on_change`, `on_ended`); the lab calls them on its event
loop: a listener status as it arrives, a `LabState` when the processes, the server or the outbox change,
and a `Member` when a listener process ended by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from dashboard.lab.checker import CheckReport
from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.control import SLOW_MS, Action, control
from dashboard.lab.history import StoredEvent, read_history
from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.nodes import NodeView, NodeWatch
from dashboard.lab.observe import ChannelStats, channel_stats
from dashboard.lab.settings import Settings
from dashboard.lab.snapshot import read_accounts, run_check
from dashboard.lab.supervisor import Member, Supervisor
from dashboard.lab.waits import LabError, cancel, close_quietly, connect_with_retry
from listeners.accounts import AccountRow, Mode, accounts_db_name
from listeners.groups import GROUPS, QueueGroup, ensure_consumer
from listeners.partitions import PartitionsError, ensure_partition_consumers, ensure_partitioned_stream
from listeners.status import STATUS_SUBJECT_PREFIX, CounterFold, ListenerStatus, read_status
from publisher.events import STREAM_NAME
from publisher.jetstream import ensure_stream
from publisher.service import Publisher
from publisher.transactions import TransactionsDB

log = logging.getLogger(__name__)

# How often the lab looks for listener processes that ended by themselves, and for other changes.
WATCH_INTERVAL_S = 0.1

# The faults whose effect depends on what the listener holds; `Lab.control` says what that was.
HINTED_ACTIONS = ("kill", "pause", "restart", "crash")
# How many held events a hint names before it says "and N more".
HINT_NAMES = 3


def held_by(supervisor: Supervisor, statuses: dict[str, ListenerStatus], name: str) -> ListenerStatus | None:
    """The latest status of the running process `name`, which says what it holds; None when the
    listener is not running or its current process has not reported yet (then there is nothing to say)."""
    entry = supervisor.listeners.get(name)
    status = statuses.get(name)
    if entry is None or not entry.alive or status is None or status.pid != entry.pid:
        return None
    return status


def held_hint(action: Action, status: ListenerStatus, ack_wait_s: float) -> str:
    """What `action` means for the events `status` says the listener holds, in words.

    Held events are delivered and not acknowledged, so the server hands them to the group again
    after the ack wait (counted from the listener's last sign of work); an idle listener holds none,
    and then nothing comes back.
    """
    count = status.in_flight_count
    wait = f"the ack wait ({ack_wait_s:g} s)"
    if action == "crash":
        if count == 0:
            return f"it holds nothing now: it dies on the next event it commits, which comes back after {wait}"
        return f"it holds {_events(status)}; once it dies, {_verb(count, 'comes', 'come')} back after {wait}"
    if count == 0:
        # The status is a few hundred milliseconds old at most: say what it showed, not more.
        if action == "pause":
            return f"its last report held nothing; what it fetched since goes to the other listeners after {wait}"
        return f"its last report held nothing, so likely nothing comes back; what it fetched since comes back after {wait}"
    if action == "pause":
        return f"it holds {_events(status)}; past {wait} {_verb(count, 'goes', 'go')} to the other listeners"
    return f"it held {_events(status)}; {_verb(count, 'comes', 'come')} back after {wait}"


def _events(status: ListenerStatus) -> str:
    """`1 event (jim #2 deposit $40)`, `5 events (jim #2 deposit $40, ... and 2 more)`."""
    count = status.in_flight_count
    named = [report.describe() for report in status.in_flight[:HINT_NAMES]]
    if count > len(named):
        named.append(f"{count - len(named)} more")
    listed = ", ".join(named[:-1]) + f" and {named[-1]}" if len(named) > 1 else "".join(named)
    return f"{count} event{'s' if count != 1 else ''}" + (f" ({listed})" if listed else "")


def _verb(count: int, singular: str, plural: str) -> str:
    return f"it {singular}" if count == 1 else f"they {plural}"


@dataclass(frozen=True, slots=True)
class LabState:
    """What an observer sees of the lab apart from listener statuses: processes, server, outbox."""

    members: tuple[Member, ...]
    server_state: str  # starting, running, restarting, down, stopped
    connected: bool
    outbox_error: str | None
    nodes: tuple[NodeView, ...] = ()  # the cluster's nodes; none with one server


def claim_topology(settings: Settings) -> None:
    """Refuse a data dir whose databases belong to another kind of server (one server, a cluster):
    the events they count are in that store, not in this one. Then remember this one."""
    try:
        before = settings.topology_file.read_text().strip()
    except FileNotFoundError:
        before = "one server" if settings.transactions_db.exists() else ""
    if before and before != settings.topology:
        raise LabError(
            f"data dir {settings.data_dir} holds a lab that ran on {before}, and its databases count the events"
            f" of that store; a {settings.topology} needs a data dir of its own (pass --data-dir)"
        )
    settings.topology_file.write_text(settings.topology + "\n")


def embedded_server(settings: Settings) -> EmbeddedServer | EmbeddedCluster:
    """The server (or cluster) a lab of its own runs on, not started yet."""
    if settings.cluster:
        return EmbeddedCluster(settings.cluster_store_dir, settings.logs_dir, settings.cluster, settings.sync)
    return EmbeddedServer(settings.store_dir, settings.logs_dir / "nats-server.log", sync=settings.sync)


def supervisor_for(settings: Settings, url: str, partitioned: int | None = None) -> Supervisor:
    return Supervisor(
        url,
        settings.data_dir,
        ack_wait_s=settings.ack_wait_s,
        defer=settings.defer,
        batch=settings.batch,
        nats_timeout_s=settings.nats_timeout_s,
        gap_timeout_s=settings.gap_timeout_s,
        partitions=settings.partitions,
        partitioned=settings.partitioned if partitioned is None else partitioned,
    )


async def declare(
    nc: NATS, ack_wait_s: float, timeout: float = 10.0, replicas: int | None = None, partitions: int = 0
) -> None:
    """Declare the stream and the groups' consumers (with `partitions`, the partitioned stream and its
    consumers too), retrying while JetStream finishes starting (a new cluster first elects its leader).
    Another partition count than the data dir's events were split into is refused at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_stream(nc, replicas)
            for group in GROUPS:
                await ensure_consumer(nc, group, ack_wait_s)
            if partitions:
                await ensure_partitioned_stream(nc, partitions, replicas)
                await ensure_partition_consumers(nc, partitions, ack_wait_s)
            return
        except PartitionsError as exc:
            raise LabError(str(exc)) from exc
        except Exception as exc:
            if time.monotonic() > deadline:
                raise LabError(f"cannot declare the stream and consumers: {exc}") from exc
            await asyncio.sleep(0.1)


class Lab:
    """Server, publisher, listener processes and their status, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: EmbeddedServer | EmbeddedCluster | None = None
        self.nc: NATS | None = None
        self.transactions: TransactionsDB | None = None
        self.publisher: Publisher | None = None
        self.supervisor: Supervisor | None = None
        # The latest status of each listener, and the counters of every listener process ever seen.
        self.statuses: dict[str, ListenerStatus] = {}
        self.counts = CounterFold()
        self.on_status: list[Callable[[ListenerStatus], object]] = []
        self.on_change: list[Callable[[LabState], object]] = []
        self.on_ended: list[Callable[[Member], object]] = []
        self.connected = False
        self.server_state = "stopped"
        self._relay_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self._nodes_task: asyncio.Task | None = None
        self.node_watch: NodeWatch | None = None
        self._last_state: LabState | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise LabError("the lab has not been started")
        return self._url

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, *, listeners: int | None = None, naive: int | None = None, partitioned: int | None = None) -> None:
        """Start everything; on failure, stop what was started (the caller gets the error, not a half lab)."""
        try:
            await self._start(listeners, naive, partitioned)
        except BaseException:
            try:
                await self.stop()
            except Exception:  # the start's error is the one to report
                log.exception("stopping a lab that failed to start")
            raise

    async def _start(self, listeners: int | None, naive: int | None, partitioned: int | None) -> None:
        settings = self.settings
        partitioned = settings.partitioned if partitioned is None else partitioned
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        if settings.nats_url:
            self._url = settings.nats_url
        else:
            claim_topology(settings)
            self.server = embedded_server(settings)
            self.server_state = "starting"
            self._url = await self.server.start()
            if isinstance(self.server, EmbeddedCluster):
                await self.server.wait_for_jetstream()  # asked at a short interval: declaring would wait 5 s a try
            settings.url_file.write_text(self._url + "\n")
        self.server_state = "running"
        self.nc = await connect_with_retry(
            self._url, "natslab-dashboard", on_disconnect=self._on_disconnect, on_reconnect=self._on_reconnect
        )
        self.connected = True
        await declare(self.nc, settings.ack_wait_s, replicas=settings.cluster or None, partitions=settings.partitions if partitioned else 0)
        await self.nc.subscribe(f"{STATUS_SUBJECT_PREFIX}.*", cb=self._on_status)
        self.transactions = await TransactionsDB.open(settings.transactions_db)
        self.publisher = Publisher(self.transactions, self.nc)
        self._relay_task = asyncio.create_task(self.publisher.run_relay(), name="outbox-relay")
        self.supervisor = supervisor_for(settings, self._url, partitioned)
        for _ in range(settings.listeners if listeners is None else listeners):
            self.supervisor.spawn("guarded")
        for _ in range(settings.naive if naive is None else naive):
            self.supervisor.spawn("naive")
        for _ in range(partitioned):
            self.supervisor.spawn("partitioned")
        self._watch_task = asyncio.create_task(self._watch(), name="lab-watch")
        if isinstance(self.server, EmbeddedCluster):
            self.node_watch = NodeWatch(self.server, self._changed)
            self._nodes_task = asyncio.create_task(self.node_watch.run(lambda: self.nc), name="lab-nodes")

    async def stop(self) -> None:
        """Stop what this lab started: listeners, relay, connection, database, server. Every part is
        stopped even when an earlier one fails (the first error is raised at the end)."""
        errors: list[Exception] = []
        steps = (self._stop_watch, self._stop_listeners, self._stop_relay, self._close_nats, self._close_transactions, self._stop_server)
        for step in steps:
            try:
                await step()
            except Exception as exc:
                log.warning("stopping the lab: %s failed: %r", step.__name__, exc)
                errors.append(exc)
        if errors:
            raise errors[0]

    async def _stop_watch(self) -> None:
        tasks, self._watch_task, self._nodes_task = (self._watch_task, self._nodes_task), None, None
        await asyncio.gather(*(cancel(task) for task in tasks))

    async def _stop_listeners(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop_all()
            self._changed()

    async def _stop_relay(self) -> None:
        task, self._relay_task = self._relay_task, None
        await cancel(task)
        if task is not None and self.publisher is not None:
            # What the relay sent is marked in the outbox now, not resent by the next lab.
            await self.publisher.flush_marks()

    async def _close_nats(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            await close_quietly(nc)  # the server may be gone already

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
        self._changed()
        await self.server.stop()
        self.server_state = "down"
        self._changed()
        await self.server.start()
        self.server_state = "running"
        self._changed()

    async def _on_disconnect(self) -> None:
        self.connected = False
        self._changed()

    async def _on_reconnect(self) -> None:
        self.connected = True
        self._changed()

    # -- watching the processes --------------------------------------------------------------------

    def state(self) -> LabState:
        supervisor, publisher = self.supervisor, self.publisher
        return LabState(
            tuple(entry.snapshot() for entry in supervisor.listeners.values()) if supervisor is not None else (),
            self.server_state,
            self.connected,
            publisher.outbox_reason() if publisher is not None and publisher.waiting_reason else None,
            self.nodes,
        )

    def _changed(self) -> None:
        """Tell the observers about a change, once per distinct state."""
        state = self.state()
        if state != self._last_state:
            self._last_state = state
            for callback in self.on_change:
                callback(state)

    async def _watch(self) -> None:
        """Reap listener processes that ended by themselves and pass on every change; the one
        place that polls the supervisor, so each ending is reported once."""
        assert self.supervisor is not None
        while True:
            try:
                if self.node_watch is not None:
                    self.node_watch.poll()
                for entry in self.supervisor.poll():
                    member = entry.snapshot()
                    log.info("listener %s ended by itself (exit %s): %s", member.name, member.exit_code, member.reason)
                    for callback in self.on_ended:
                        callback(member)
                self._changed()
            except Exception:  # an observer's bug must not stop the reaping
                log.exception("watching the lab")
            await asyncio.sleep(WATCH_INTERVAL_S)

    # -- the cluster's nodes -------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[NodeView, ...]:
        return self.node_watch.views if self.node_watch is not None else ()

    async def node_control(self, action: str, name: str) -> str:
        """Do `action` (kill, pause, resume, lame-duck, restart) to node `name` of the embedded cluster."""
        if self.node_watch is None:
            raise LabError("the lab runs one NATS server, not a cluster: start it with --cluster 3 to break nodes")
        return await self.node_watch.control(action, name)

    # -- status and control ------------------------------------------------------------------------

    async def _on_status(self, msg: Msg) -> None:
        status = read_status(msg.data, msg.subject)
        if status is None:
            return
        self.statuses[status.name] = status
        self.counts.add(status)
        for callback in self.on_status:
            callback(status)

    async def control(self, action: Action, name: str = "", *, mode: Mode = "guarded", slow_ms: int = SLOW_MS) -> str:
        """Do `action` to listener `name` (see `dashboard.lab.control`); returns what was done, in words.

        A kill, pause, restart or crash also says what the listener held (`held_hint`): a fault that
        hit an idle listener shows nothing, and the user is told so rather than left waiting.
        """
        if self.supervisor is None or self.nc is None:
            raise LabError("the lab has not been started")
        held = held_by(self.supervisor, self.statuses, name) if action in HINTED_ACTIONS else None  # before the fault
        try:
            done = await control(self.supervisor, self.nc, action, name, mode=mode, slow_ms=slow_ms)
        finally:
            self._changed()
        return done if held is None else f"{done}; {held_hint(action, held, self.settings.ack_wait_s)}"

    # -- observations ------------------------------------------------------------------------------

    async def consumer_info(self, group: QueueGroup) -> api.ConsumerInfo:
        assert self.nc is not None
        return await self.nc.jetstream().consumer_info(STREAM_NAME, group.name)

    async def stream_info(self) -> api.StreamInfo:
        assert self.nc is not None
        return await self.nc.jetstream().stream_info(STREAM_NAME)

    async def channel_stats(self, previous: dict[str, ChannelStats] | None = None) -> dict[str, ChannelStats]:
        assert self.nc is not None
        return await channel_stats(self.nc, previous)

    async def accounts(self, mode: Mode) -> list[AccountRow]:
        """The account table, read without writing (it is polled a few times a second)."""
        return await read_accounts(self.settings.data_dir / accounts_db_name(mode))

    async def history(self) -> list[StoredEvent]:
        """Every event stored in the stream, oldest first."""
        assert self.nc is not None
        return await read_history(self.nc)

    async def check(self) -> CheckReport:
        assert self.nc is not None
        return await run_check(self.nc, self.settings.data_dir)
