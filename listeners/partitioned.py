"""What a listener of the partitioned group does instead of fetching from one shared consumer
(docs/design.md, "The partitioned group").

It pulls its home partitions from the start: listener i of a group of L takes every L-th partition
from i-1, so the server pins each partition to its home listener first. It watches the others once
every WATCH_INTERVAL_S, and stands by: a partition that has events waiting and no owner for
ORPHAN_LOOKS looks in a row (its owner died or froze, and the server unpinned it after the priority
timeout) is pulled too, and the server pins it to whichever standby asks first (one that owns more
partitions looks one more time for each, so the least busy stands in). A home listener that sees
its partition pinned to another for CLAIM_LOOKS looks (it was away, and is back) claims it on
`natslab.partitions.claim.<p>`, every look until it owns it; the listener holding it stops pulling,
finishes and acknowledges what it has, then unpins it, so the home listener's waiting pull gets the
next event.

Each partition has its own worker and batch handler, so a slow event holds up its partition only;
the batches of every partition are written through the one account database connection in turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from listeners.batches import HOLD_RECHECK_S, BatchHandler, delivery_from_msg
from listeners.faults import Faults
from listeners.outcomes import Delivery
from listeners.partitions import (
    PRIORITY_TIMEOUT_S,
    PartitionsError,
    PartitionState,
    ensure_partition_consumers,
    ensure_partitioned_stream,
    partition_state,
    unpin,
)
from listeners.pinned import PartitionPuller
from publisher.jetstream import ensure_stream

if TYPE_CHECKING:
    from listeners.account_listener import ListenerConfig

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5
# Three looks (at least a second): a home listener that reconnects after a server restart asks first.
ORPHAN_LOOKS = 3
# A standby that got no pin for this long after it began pulling (another standby won) stops again.
STANDBY_GIVES_UP_S = 2 * PRIORITY_TIMEOUT_S
# A home listener claims its partition back after seeing it pinned to another this many looks in a row
# (a pin just given to it may not have reached it yet).
CLAIM_LOOKS = 2
CLAIM_SUBJECT = "natslab.partitions.claim"
IDLE_TAKE_S = 0.5
# How often a listener that took a partition over looks whether its predecessor's events are back.
FENCE_LOOK_S = 0.2


class PartitionedConsumer:
    """One partitioned listener's pullers, workers and watch."""

    def __init__(
        self,
        nc: NATS,
        config: ListenerConfig,
        fault: Faults,
        make_handler: Callable[[int], BatchHandler],
        stop: asyncio.Event,
        wake: asyncio.Event,
    ) -> None:
        self.nc = nc
        self.name = config.name
        self.partitions = config.partitions
        self.home = set(config.home)
        self.batch = config.batch
        self.ack_wait_s = config.ack_wait_s
        self.fault = fault
        self.handlers = {p: make_handler(p) for p in range(self.partitions)}
        self.pullers: dict[int, PartitionPuller] = {}
        self._stop = stop
        self._wake = wake
        self._orphan_looks: dict[int, int] = defaultdict(int)
        self._pulling_since: dict[int, float] = {}
        self._held_looks: dict[int, int] = defaultdict(int)  # home partitions seen pinned to another
        self._retiring: dict[int, bool] = {}  # partition -> unpin once drained (a hand-back)

    # -- what the status says ----------------------------------------------------------------------

    def waiting(self) -> list[Delivery]:
        """Events delivered to this listener that wait in its pullers for their partition's worker."""
        return [delivery for _p, puller in sorted(self.pullers.items()) for delivery in puller.waiting()]

    def owned(self) -> dict[int, str]:
        """Partition -> the pin the server gave us for it, for each partition we own as far as we know."""
        return {p: puller.pin_id for p, puller in sorted(self.pullers.items()) if puller.pin_id}

    # -- running -----------------------------------------------------------------------------------

    async def declare(self, trouble: Callable[[Exception], None]) -> str | None:
        """Declare both streams and the partition consumers, asking again while there is no leader or
        no connection (`trouble` hears why); the reason when they cannot be used (another partition
        count), else None."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await ensure_stream(self.nc)
                await ensure_partitioned_stream(self.nc, self.partitions)
                await ensure_partition_consumers(self.nc, self.partitions, self.ack_wait_s)
                return None
            except PartitionsError as exc:
                log.error("%s", exc)
                return str(exc)
            except Exception as exc:
                log.warning("declaring the partitions failed: %r", exc)
                trouble(exc)
                await _wait(self._stop, backoff)
                backoff = min(backoff * 2, 2.0)
        return None

    async def run(self) -> None:
        """Work until the stop event; then settle what was taken and hand the rest back."""
        claims = await self.nc.subscribe(f"{CLAIM_SUBJECT}.*", cb=self._on_claim)
        for partition in sorted(self.home):
            await self._pull(partition)
        workers = [asyncio.create_task(self._work(p), name=f"partition-{p}") for p in range(self.partitions)]
        watch = asyncio.create_task(self._watch(), name="partition-watch")
        try:
            await self._stop.wait()
        finally:
            watch.cancel()
            await _quietly_unsubscribe(claims)
            for puller in self.pullers.values():
                await puller.stop()
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(watch, return_exceptions=True)
            for partition, puller in self.pullers.items():
                for msg in await puller.take(puller.queued, 0):
                    await BatchHandler.settle(msg.nak())
                await self.handlers[partition].release_held()

    async def _pull(self, partition: int) -> None:
        puller = PartitionPuller(self.nc, partition, self.batch, self.ack_wait_s, lambda msg: delivery_from_msg(msg, True))
        await puller.start()
        self.pullers[partition] = puller
        self._pulling_since[partition] = time.monotonic()
        self._wake.set()

    async def _work(self, partition: int) -> None:
        handler = self.handlers[partition]
        while not self._stop.is_set():
            puller = self.pullers.get(partition)
            if puller is None:
                await _wait(self._stop, IDLE_TAKE_S)
                continue
            # When slowed, one event at a time, so the delay is per event, as for the other groups.
            batch = 1 if self.fault.slow_ms else self.batch
            msgs = await puller.take(batch, HOLD_RECHECK_S if handler.holding else IDLE_TAKE_S)
            if msgs and puller.new_pin:
                puller.new_pin = False
                msgs = await self._after_predecessors(partition, puller, msgs)
            if msgs or handler.holding:
                await handler.handle(msgs)
            if partition in self._retiring and not puller.queued and not handler.holding:
                await self._retire(partition)

    async def _after_predecessors(self, partition: int, puller: PartitionPuller, msgs: list[Msg]) -> list[Msg]:
        """We were just given the partition. The events its previous owner (or our own previous
        process) took and never acknowledged come back to us after the ack wait; the newer ones the
        server sends meanwhile wait for them, so the partition is still applied in order and the
        number rule has nothing to defer. Waits until the partition's unacknowledged events are all
        ours, for two ack waits at most; returns everything we hold, in stream order."""
        waited_from = touched = time.monotonic()
        logged = False
        while not self._stop.is_set() and time.monotonic() - waited_from < 2 * self.ack_wait_s + 1:
            if puller.queued:
                msgs += await puller.take(puller.queued, 0)
            try:
                state = await partition_state(self.nc, partition)
            except Exception as exc:  # no answer now: look again
                log.debug("partition %d info failed: %r", partition, exc)
            else:
                if state.ack_pending <= len(msgs) + self.handlers[partition].held_count:
                    break
                if not logged and time.monotonic() - waited_from > FENCE_LOOK_S:  # not just in flight to us
                    log.info("partition %d: waiting for the %d events its previous owner held", partition, state.ack_pending - len(msgs))
                    logged = True
            if time.monotonic() - touched >= self.ack_wait_s / 2:
                touched = time.monotonic()
                for msg in msgs:
                    await BatchHandler.settle(msg.in_progress())
            await _wait(self._stop, FENCE_LOOK_S)
        return sorted(msgs, key=lambda msg: msg.metadata.sequence.stream)

    async def _retire(self, partition: int) -> None:
        """A partition we stopped pulling is drained: forget it, and unpin it when handing it back."""
        hand_back = self._retiring.pop(partition)
        self.pullers.pop(partition, None)
        self._pulling_since.pop(partition, None)
        self._wake.set()
        if hand_back:
            try:
                await unpin(self.nc, partition)
                log.info("partition %d handed back", partition)
            except Exception as exc:  # the pin times out by itself meanwhile
                log.warning("unpin of partition %d failed: %r", partition, exc)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            for partition in range(self.partitions):
                asked = time.monotonic()
                try:
                    state = await partition_state(self.nc, partition)
                except Exception as exc:  # no connection or no leader for now: look again later
                    log.debug("partition %d info failed: %r", partition, exc)
                    continue
                puller = self.pullers.get(partition)
                if puller is not None and state.pinned_id is None:
                    puller.forget_pin(asked)
                await self._look(partition, state, time.monotonic())
            await _wait(self._stop, WATCH_INTERVAL_S)

    async def _look(self, partition: int, state: PartitionState, now: float) -> None:
        puller = self.pullers.get(partition)
        if partition in self.home:
            await self._claim_if_held(partition, puller, state)
            return
        if partition in self._retiring:
            return
        if puller is None:
            orphan = state.pinned_id is None and state.lag > 0
            self._orphan_looks[partition] = self._orphan_looks[partition] + 1 if orphan else 0
            # A listener that owns fewer partitions looks fewer times: the least busy standby stands in.
            if self._orphan_looks[partition] >= ORPHAN_LOOKS + len(self.owned()):
                log.info("partition %d has no owner and %d events waiting: standing in", partition, state.lag)
                self._orphan_looks[partition] = 0
                await self._pull(partition)
            return
        if not puller.owner and now - self._pulling_since.get(partition, now) > STANDBY_GIVES_UP_S:
            await self._stop_pulling(partition, hand_back=False)  # another standby got it

    async def _claim_if_held(self, partition: int, puller: PartitionPuller | None, state: PartitionState) -> None:
        """Our home partition pinned to another listener (we were away): ask for it back."""
        held = state.pinned_id is not None and (puller is None or puller.pin_id != state.pinned_id)
        self._held_looks[partition] = self._held_looks[partition] + 1 if held else 0
        if self._held_looks[partition] >= CLAIM_LOOKS:
            await self.nc.publish(f"{CLAIM_SUBJECT}.{partition}", self.name.encode())

    async def _on_claim(self, msg: Msg) -> None:
        """A home listener asks for its partition: hand it back if we hold it."""
        token = msg.subject.rsplit(".", 1)[1]
        partition = int(token) if token.isdigit() else -1
        puller = self.pullers.get(partition)
        if puller is None or partition in self.home or partition in self._retiring or not puller.owner:
            return
        log.info("partition %d: %s, its home listener, asks for it; handing it back", partition, msg.data.decode())
        await self._stop_pulling(partition, hand_back=True)

    async def _stop_pulling(self, partition: int, *, hand_back: bool) -> None:
        self._retiring[partition] = hand_back
        await self.pullers[partition].stop()
        self._wake.set()


async def _quietly_unsubscribe(sub) -> None:
    try:
        await sub.unsubscribe()
    except Exception as exc:  # the connection may be closed already
        log.debug("unsubscribe failed: %r", exc)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
