"""Looking at the streams from outside: what each channel holds, per user, and how the partitioned
group's partitions stand."""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from listeners.partitions import PARTITIONED_STREAM, PartitionState, partition_states, partitions_of_stream
from publisher.events import STREAM_NAME, STREAM_SUBJECTS, channel_of_subject


@dataclass(slots=True)
class ChannelStats:
    """One channel (`account:deposit`) of the stream: stored messages, last stream sequence, per user."""

    channel: str
    messages: int = 0
    last_seq: int = 0
    per_user: dict[str, int] = field(default_factory=dict)


async def channel_stats(nc: NATS, previous: dict[str, ChannelStats] | None = None) -> dict[str, ChannelStats]:
    """Per channel: stored messages, messages per user and the last stream sequence.

    The counts come from the stream's per-subject state; the last sequence costs one look-up per
    channel, skipped when `previous` (the last answer) shows the channel has not grown.
    """
    js = nc.jetstream()
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


@dataclass(frozen=True, slots=True)
class PartitionsSeen:
    """The partitioned group as the server sees it: how many partitions the stream splits users into,
    each partition consumer's state, and how many events of ACCOUNT_EVENTS the partitioned stream has
    not copied yet (they are in no partition's lag)."""

    count: int
    states: tuple[PartitionState, ...]
    source_lag: int = 0

    @property
    def lag(self) -> int:
        """Events the group has not processed yet: not copied, not delivered, or not acknowledged."""
        return self.source_lag + sum(state.lag for state in self.states)


async def partitions_seen(nc: NATS) -> PartitionsSeen | None:
    """The partitioned group's state; None when there is no partitioned stream (a lab without the
    group). The partition count comes from the stream's own transform, so a dashboard attached to
    another's lab reads it the same way."""
    try:
        info = await nc.jetstream().stream_info(PARTITIONED_STREAM)
    except NotFoundError:
        return None
    count = partitions_of_stream(info)
    if count is None:
        return None
    source_lag = sum(source.lag or 0 for source in info.sources or [])
    try:
        states = await partition_states(nc, count)
    except NotFoundError:  # the stream is there, its consumers not yet: a lab starting
        return None
    return PartitionsSeen(count, tuple(states), source_lag)
