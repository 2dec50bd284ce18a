"""Partitioned ordering: the stream that splits the events by user, and its partition consumers
(docs/design.md, "The partitioned group").

A second stream, `ACCOUNT_EVENTS_P`, sources every event of `ACCOUNT_EVENTS` through a subject
transform that appends the user's partition: `account.deposit.jim` is stored there as
`account.deposit.jim.2`. The partition is nats-server's `{{partition(N,2)}}`: FNV-1a (32 bit) of the
user token, modulo N, so a user's deposits and withdrawals always land in the same partition.
`ACCOUNT_EVENTS` stays as it is, and the sourced stream partitions the events stored before it existed.

Each partition has a durable pull consumer filtered on `account.*.*.<p>` with a pinned-client
priority group: the server delivers the partition to one listener at a time (the one it pinned), in
stream order. nats-py has no helper for priority groups, so the consumers are created, read and
unpinned here with raw JetStream API requests; a plain `js.add_consumer` would silently drop the
priority policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.errors import NotFoundError

from listeners.status import ListenerStatus
from publisher.events import STREAM_NAME
from publisher.jetstream import MAX_REPLICAS, cluster_size

PARTITIONED_STREAM = "ACCOUNT_EVENTS_P"
DEFAULT_PARTITIONS = 3
MAX_PARTITIONS = 16
CONSUMER_PREFIX = "account-service-partitioned-p"
# The priority group every partition consumer has; pulls name it.
PIN_GROUP = "owner"
# A pinned listener that has not asked for messages for this long loses its partition to another.
PRIORITY_TIMEOUT_S = 2.0
# The most events of one partition delivered and not yet acknowledged: a batch's worth.
PARTITION_MAX_ACK_PENDING = 100
API_TIMEOUT_S = 2.0

_SOURCE = "account.*.*"

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


class PartitionsError(RuntimeError):
    """The partitioned stream cannot be used as asked (another partition count, an API error)."""


def partition_of(user_id: str, partitions: int) -> int:
    """The partition nats-server's `{{partition(N,2)}}` gives a user: FNV-1a 32 of the token, mod N."""
    value = _FNV_OFFSET
    for byte in user_id.encode():
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value % partitions


def transform_destination(partitions: int) -> str:
    return f"account.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({partitions},2)}}}}"


def partitions_of_transform(destination: str | None) -> int | None:
    """N of a stream's `{{partition(N,2)}}` destination; None when it has none."""
    if not destination or "partition(" not in destination:
        return None
    inside = destination.split("partition(", 1)[1].split(")", 1)[0]
    try:
        return int(inside.split(",", 1)[0])
    except ValueError:
        return None


def partitions_of_stream(info: api.StreamInfo) -> int | None:
    """N of a partitioned stream's `{{partition(N,2)}}` source transform; None when it has none."""
    transforms = [t for source in info.config.sources or [] for t in source.subject_transforms or []]
    return partitions_of_transform(transforms[0].dest if transforms else None)


def consumer_name(partition: int) -> str:
    return f"{CONSUMER_PREFIX}{partition}"


def filter_subject(partition: int) -> str:
    return f"account.*.*.{partition}"


def event_subject(stored: str) -> str:
    """`account.deposit.jim.2` (as the partitioned stream stores it) -> `account.deposit.jim`."""
    head, _, last = stored.rpartition(".")
    return head if head.count(".") == 2 and last.isdigit() else stored


def source_sequence(headers: dict[str, str] | None) -> int | None:
    """The event's sequence in ACCOUNT_EVENTS, from the `Nats-Stream-Source` header the server puts on
    what it sources (`ACCOUNT_EVENTS 42 <filter> <destination>`)."""
    value = (headers or {}).get("Nats-Stream-Source", "")
    parts = value.split()
    if len(parts) >= 2 and parts[0].split(":")[0] == STREAM_NAME and parts[1].isdigit():
        return int(parts[1])
    return None


def stream_config(partitions: int, replicas: int) -> api.StreamConfig:
    return api.StreamConfig(
        name=PARTITIONED_STREAM,
        num_replicas=replicas,
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        sources=[
            api.StreamSource(
                name=STREAM_NAME,
                subject_transforms=[api.SubjectTransform(src=_SOURCE, dest=transform_destination(partitions))],
            )
        ],
    )


async def ensure_partitioned_stream(nc: NATS, partitions: int, replicas: int | None = None) -> api.StreamInfo:
    """Create the partitioned stream, or check that an existing one splits into `partitions`: the
    count is fixed for the life of the data, since another count moves most users to another partition."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(PARTITIONED_STREAM)
    except NotFoundError:
        return await js.add_stream(stream_config(partitions, replicas or min(MAX_REPLICAS, cluster_size(nc))))
    existing = partitions_of_stream(info)
    if existing is not None and existing != partitions:
        raise PartitionsError(
            f"the partitioned stream splits users into {existing} partitions, not {partitions}: the count"
            " is fixed for the life of the data (use --partitions {existing}, or another data dir)"
        )
    return info


def consumer_config(partition: int, ack_wait_s: float) -> dict[str, Any]:
    """The partition consumer's config as the JetStream API takes it (durations in ns)."""
    return {
        "name": consumer_name(partition),
        "durable_name": consumer_name(partition),
        "filter_subject": filter_subject(partition),
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(ack_wait_s * 1e9),
        "max_deliver": -1,
        "max_ack_pending": PARTITION_MAX_ACK_PENDING,
        "replay_policy": "instant",
        "num_replicas": 0,
        "priority_groups": [PIN_GROUP],
        "priority_policy": "pinned_client",
        "priority_timeout": int(PRIORITY_TIMEOUT_S * 1e9),
    }


async def api_request(nc: NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API request; an error reply raises NotFoundError (404) or PartitionsError."""
    reply = await nc.request(subject, json.dumps(body or {}).encode(), timeout=API_TIMEOUT_S)
    data = json.loads(reply.data)
    error = data.get("error")
    if error:
        if error.get("code") == 404:
            raise NotFoundError(code=404, err_code=error.get("err_code"), description=error.get("description"))
        raise PartitionsError(f"{subject}: {error.get('description')} ({error.get('code')})")
    return data


async def ensure_partition_consumers(nc: NATS, partitions: int, ack_wait_s: float) -> None:
    """Create (or bring to our config) every partition's pinned consumer; idempotent."""
    for partition in range(partitions):
        config = consumer_config(partition, ack_wait_s)
        await api_request(
            nc,
            f"$JS.API.CONSUMER.CREATE.{PARTITIONED_STREAM}.{config['name']}",
            {"stream_name": PARTITIONED_STREAM, "config": config},
        )


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition consumer as the server reports it."""

    partition: int
    pinned_id: str | None  # the pin the server gave its owner; None: nobody holds the partition
    delivered: int  # stream sequence of the partitioned stream
    ack_floor: int
    ack_pending: int
    redelivered: int
    pending: int  # not yet delivered
    waiting: int  # pull requests waiting at the server

    @property
    def lag(self) -> int:
        """Events of the partition not yet processed: waiting for delivery, or delivered and not acknowledged."""
        return self.pending + self.ack_pending

    @classmethod
    def from_info(cls, partition: int, data: dict[str, Any]) -> PartitionState:
        groups = data.get("priority_groups") or []
        pinned = next((g.get("pinned_client_id") for g in groups if g.get("group") == PIN_GROUP), None)
        return cls(
            partition=partition,
            pinned_id=pinned or None,
            delivered=int((data.get("delivered") or {}).get("stream_seq", 0)),
            ack_floor=int((data.get("ack_floor") or {}).get("stream_seq", 0)),
            ack_pending=int(data.get("num_ack_pending", 0)),
            redelivered=int(data.get("num_redelivered", 0)),
            pending=int(data.get("num_pending", 0)),
            waiting=int(data.get("num_waiting", 0)),
        )


async def partition_state(nc: NATS, partition: int) -> PartitionState:
    data = await api_request(nc, f"$JS.API.CONSUMER.INFO.{PARTITIONED_STREAM}.{consumer_name(partition)}")
    return PartitionState.from_info(partition, data)


async def partition_states(nc: NATS, partitions: int) -> list[PartitionState]:
    return [await partition_state(nc, p) for p in range(partitions)]


async def unpin(nc: NATS, partition: int) -> None:
    """Let the server give the partition to the next listener that asks."""
    await api_request(
        nc, f"$JS.API.CONSUMER.UNPIN.{PARTITIONED_STREAM}.{consumer_name(partition)}", {"group": PIN_GROUP}
    )


def partition_owners(states: Iterable[PartitionState], statuses: Iterable[ListenerStatus]) -> dict[int, str | None]:
    """Partition -> the listener that owns it now: the one whose status names the pin the server
    reports (a dead listener's last status names an old pin); None when nobody holds it."""
    by_pin = {pin: status.name for status in statuses for pin in status.partitions.values()}
    return {state.partition: by_pin.get(state.pinned_id) if state.pinned_id else None for state in states}


def home_partitions(index: int, group_size: int, partitions: int) -> list[int]:
    """The partitions listener number `index` (1-based) of a group of `group_size` takes first: every
    group_size-th from its own. A listener beyond the group's size has none: it only stands by."""
    if index < 1 or index > group_size:
        return []
    return [p for p in range(partitions) if p % group_size == index - 1]
