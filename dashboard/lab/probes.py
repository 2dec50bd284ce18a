"""Questions that scenarios, chaos runs, the benchmark and the tests ask a running lab, and wait on."""

from __future__ import annotations

import logging

from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.lab import Lab
from dashboard.lab.nodes import ASSETS, CURRENT, LEADER, asset_roles
from dashboard.lab.snapshot import read_transactions
from dashboard.lab.waits import LabError, wait_until
from listeners.accounts import Mode
from listeners.groups import group_for_mode
from listeners.outcomes import MODES
from listeners.partitions import PARTITIONED_STREAM, partition_states
from publisher.events import STREAM_NAME

log = logging.getLogger(__name__)

# A listener told to be this slow holds what it fetched until it is killed or told `normal`. An
# hour, not minutes: on the dashboard a scenario waits for a key between captions, and a reader who
# steps away must not come back to a holder that finished its event and changed the story.
HOLD_MS = 3_600_000


def alive(lab: Lab, mode: Mode) -> list[str]:
    assert lab.supervisor is not None
    return [entry.name for entry in lab.supervisor.members(mode) if entry.alive]


async def wait_listeners_ready(lab: Lab, timeout: float = 20.0) -> None:
    """Every listener meant to run (all but those killed or stopped on purpose) has reported a status
    from its current process and is fetching.

    A listener that ended by itself, before or during the wait, fails it at once with the reason it
    gave (the lab's watch reaps it within `WATCH_INTERVAL_S`).
    """
    assert lab.supervisor is not None
    supervisor = lab.supervisor

    def ready() -> bool:
        check_server(lab)
        all_ready = True
        for entry in supervisor.listeners.values():
            if entry.state in ("killed", "stopped"):
                continue
            if entry.state in ("crashed", "exited"):
                raise LabError(
                    f"listener {entry.name} exited with code {entry.exit_code} before it was ready: {entry.reason}"
                )
            status = lab.statuses.get(entry.name)
            if not entry.alive or status is None or status.pid != entry.pid or status.state not in ("running", "slow"):
                all_ready = False  # starting, or ended and not yet reaped
        return all_ready

    await wait_until(ready, timeout, "the listeners to start")


def holder_of(lab: Lab, mode: Mode, user: str, number: int) -> str | None:
    """The live listener of `mode` that has the event user #number in flight, if any."""
    for name in alive(lab, mode):
        status = lab.statuses.get(name)
        if status is not None and any(d.user_id == user and d.number == number for d in status.in_flight):
            return name
    return None


async def account_is(lab: Lab, mode: Mode, user: str, last_number: int) -> bool:
    return any(row.user_id == user and row.last_number >= last_number for row in await lab.accounts(mode))


async def prepare_listeners(lab: Lab) -> None:
    """Every listener running at normal speed: resume the paused, restart the dead, clear faults."""
    assert lab.supervisor is not None
    for entry in list(lab.supervisor.listeners.values()):
        if entry.alive and entry.state == "paused":
            await lab.control("resume", entry.name)
        elif not entry.alive:
            await lab.control("restart", entry.name)
    await wait_listeners_ready(lab)
    for entry in lab.supervisor.listeners.values():
        await lab.control("normal", entry.name)


async def taken_users(lab: Lab) -> set[str]:
    """Every user the lab has seen: in the stream, in the outbox or in an account database."""
    taken: set[str] = set()
    for channel in (await lab.channel_stats()).values():
        taken.update(channel.per_user)
    transactions = await read_transactions(lab.settings.transactions_db)
    taken.update(event.user_id for event in transactions.published + transactions.unpublished)
    for mode in MODES:
        taken.update(row.user_id for row in await lab.accounts(mode))
    return taken


async def fresh_user(lab: Lab, base: str) -> str:
    """`base`, or `base2`, `base3`... : a user with no events yet, so a story starts at #1."""
    taken = await taken_users(lab)
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}{suffix}"
    return name


def check_server(lab: Lab) -> None:
    """Raise LabError when the embedded server has died without being stopped or restarted by us:
    waiting for the system to make progress is then pointless."""
    server = lab.server
    if server is not None and lab.server_state == "running" and server.exit_code is not None:
        raise LabError(
            f"the embedded nats-server (pid {server.pid}) ended by itself with code {server.exit_code};"
            f" see {server.log_file}"
        )


async def drained(lab: Lab, modes: tuple[Mode, ...] = MODES) -> bool:
    """Nothing left to publish, and every event of each running group delivered and acknowledged."""
    check_server(lab)
    if lab.transactions is not None and await lab.transactions.count_unpublished():
        return False
    assert lab.supervisor is not None
    try:
        for mode in modes:
            if not any(entry.alive for entry in lab.supervisor.members(mode)):
                continue
            if mode == "partitioned":
                if not await partitions_drained(lab):
                    return False
                continue
            info = await lab.consumer_info(group_for_mode(mode))
            if info.num_pending or info.num_ack_pending:
                return False
    except Exception as exc:  # the server may be restarting: not drained yet
        log.debug("drained: %r", exc)
        return False
    return True

async def partitions_drained(lab: Lab) -> bool:
    """The partitioned stream has every event of ACCOUNT_EVENTS, and every partition has processed its own."""
    assert lab.nc is not None
    js = lab.nc.jetstream()
    source, copy = await js.stream_info(STREAM_NAME), await js.stream_info(PARTITIONED_STREAM)
    if copy.state.messages < source.state.messages:
        return False
    return all(state.lag == 0 for state in await partition_states(lab.nc, lab.settings.partitions))


async def wait_drained(lab: Lab, timeout: float = 60.0, modes: tuple[Mode, ...] = MODES) -> None:
    await wait_until(lambda: drained(lab, modes), timeout, "the listeners to drain", interval=0.1)


# -- the cluster's nodes ---------------------------------------------------------------------------


async def stream_leader(lab: Lab) -> str | None:
    """The node that leads the stream now, asked of JetStream (not the lab's view, which is up to a
    second old); None while it elects one, or with one server."""
    if lab.nc is None or not isinstance(lab.server, EmbeddedCluster):
        return None
    roles = (await asset_roles(lab.nc))[0]
    return next((node for node, role in (roles or {}).items() if role == LEADER), None)


async def cluster_unwell(lab: Lab) -> str | None:
    """What keeps the embedded cluster from being whole, in words; None once every node runs and, in
    every asset (the stream and both consumers), one node leads and the others are current. With one
    server, None.

    Asked afresh each time: the lab's node view can still show the leader of a second ago.
    """
    cluster = lab.server
    if not isinstance(cluster, EmbeddedCluster):
        return None
    processes = cluster.processes()
    down = [f"{process.name} is {process.state}" for process in processes if process.state != "running"]
    if down:
        return ", ".join(down)
    if lab.nc is None or not lab.nc.is_connected:
        return "the lab is not connected to NATS"
    for asset, roles in zip(ASSETS, await asset_roles(lab.nc)):
        if roles is None or LEADER not in roles.values():
            return f"{asset} has no leader"
        behind = [p.name for p in processes if roles.get(p.name) not in (LEADER, CURRENT)]
        if behind:
            behind = [f"{name} {roles.get(name) or 'unknown'}" for name in behind]
            return f"in {asset}: {', '.join(behind)}"
    return None


async def wait_cluster_whole(lab: Lab, timeout: float) -> None:
    """Wait until `cluster_unwell` has nothing to say; LabError naming what was still wrong at the deadline."""
    last: list[str | None] = [None]

    async def whole() -> bool:
        last[0] = await cluster_unwell(lab)
        return last[0] is None

    try:
        await wait_until(whole, timeout, "the cluster to be whole", interval=0.2)
    except TimeoutError:
        raise LabError(f"the cluster was not whole again within {timeout:g} s: {last[0]}") from None

