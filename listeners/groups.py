"""Queue groups: the durable pull consumers that listener processes share.

A queue group of the seed is one durable pull consumer here; every listener process of the group
fetches from it, so each event goes to one member. Explicit acks with a short ack wait make an
unacknowledged event come back, and `max_deliver` stays unlimited so a deferred event is never dropped.
A consumer has as many replicas as the stream (num_replicas 0), so in a cluster it survives a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.errors import NotFoundError

from listeners.accounts import Mode
from publisher.events import STREAM_NAME

DEFAULT_ACK_WAIT_S = 5.0
MAX_ACK_PENDING = 20_000


@dataclass(frozen=True, slots=True)
class QueueGroup:
    name: str
    mode: Mode


GUARDED_GROUP = QueueGroup("account-service", "guarded")
NAIVE_GROUP = QueueGroup("account-service-naive", "naive")
# The groups that share one durable consumer of ACCOUNT_EVENTS.
GROUPS = (GUARDED_GROUP, NAIVE_GROUP)
# The partitioned group has one consumer per partition, on ACCOUNT_EVENTS_P (listeners/partitions.py).
PARTITIONED_GROUP = QueueGroup("account-service-partitioned", "partitioned")
ALL_GROUPS = (*GROUPS, PARTITIONED_GROUP)


def group_for_mode(mode: Mode) -> QueueGroup:
    return next(group for group in ALL_GROUPS if group.mode == mode)


def consumer_config(group: QueueGroup, ack_wait_s: float) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=group.name,
        durable_name=group.name,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=MAX_ACK_PENDING,
        replay_policy=api.ReplayPolicy.INSTANT,
    )


async def ensure_consumer(nc: NATS, group: QueueGroup, ack_wait_s: float = DEFAULT_ACK_WAIT_S) -> api.ConsumerInfo:
    """Create the group's durable consumer, or update its ack wait; idempotent."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(STREAM_NAME, group.name)
    except NotFoundError:
        return await js.add_consumer(STREAM_NAME, consumer_config(group, ack_wait_s))
    if info.config.ack_wait is not None and abs(info.config.ack_wait - ack_wait_s) < 1e-6:
        return info
    return await js.add_consumer(STREAM_NAME, consumer_config(group, ack_wait_s))
