"""One slow user (`slow-user USER MS`, docs/design.md "The partitioned group"): every event of that
user takes MS to process, as if its work called a slow service.

A partitioned listener applies a partition in order, so the events behind a slow one wait for it,
its partition-mates' too. The other groups take the slow user's events apart into a slow lane, one at
a time, lowest number first, and go on with the rest: any listener may take any event and the number
rule sorts them out. Only an event the rule would apply costs the time: one that came early (its
predecessor is in another listener's lane) or again (already applied) is decided at once, as a real
service checks the number before it does the slow work. While events wait, the server is told every
half ack wait that the listener still has them (`in_progress`), so they are not sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from listeners.accounts import AccountsDB
from listeners.faults import Faults
from listeners.outcomes import Delivery, guards

# How often an early event in the lane looks again whether its predecessor came.
LANE_RECHECK_S = 0.02


@dataclass(slots=True)
class _Waiting:
    msg: Msg
    delivery: Delivery
    touched: float  # when the server was last told we hold it
    since: float = 0.0  # when it came into the lane


class SlowUser:
    """The slow user's events of one batch handler."""

    def __init__(
        self,
        fault: Faults,
        db: AccountsDB,
        mode: str,
        ack_wait_s: float,
        parse: Callable[[Msg], Delivery],
        decide: Callable[[list[Msg]], Awaitable[None]],
        settle: Callable[[Awaitable[None] | None], Awaitable[None]],
        stopping: asyncio.Event,
        hold_s: float,
    ) -> None:
        self.fault = fault
        self._hold_s = hold_s  # how long an early event waits in the lane for its predecessor
        self._db = db
        self._mode = mode
        self._ack_wait_s = ack_wait_s
        self._parse = parse
        self._decide = decide
        self._settle = settle
        self._stopping = stopping
        self._lane: list[_Waiting] = []
        self._lane_task: asyncio.Task[None] | None = None
        self._lane_grew = asyncio.Event()

    def concerns(self, fetched: list[Msg]) -> bool:
        return self.fault.slow_user is not None and any(map(self.fault.is_slow, fetched))

    @property
    def waiting(self) -> int:
        return len(self._lane)

    async def handle(self, fetched: list[Msg]) -> None:
        """A batch with some of the slow user's events in it."""
        # When the server was last told about an event before it came here is not known: at once.
        never = 0.0
        if self._mode != "partitioned":
            now = time.monotonic()
            self._lane += [_Waiting(msg, self._parse(msg), never, now) for msg in fetched if self.fault.is_slow(msg)]
            self._lane_grew.set()
            if self._lane_task is None or self._lane_task.done():
                self._lane_task = asyncio.create_task(self._run_lane(), name="slow-lane")
            rest = [msg for msg in fetched if not self.fault.is_slow(msg)]
            if rest:
                await self._decide(rest)
            return
        waiting = [_Waiting(msg, self._parse(msg), never) for msg in fetched]
        segment: list[Msg] = []
        for entry in waiting:  # each slow event starts a segment: what is before it is done first
            if self.fault.is_slow(entry.msg):
                if segment:
                    await self._decide(segment)
                    segment = []
                if await self._rank(entry.delivery) == "next":
                    await self._work(waiting[waiting.index(entry):])
            segment.append(entry.msg)
        await self._decide(segment)

    async def _run_lane(self) -> None:
        """Lowest number first. The next event costs the time; an early one waits in the lane a
        moment for its predecessor (often in another listener's lane) and then goes back to the
        server; one already applied is decided at once."""
        while self._lane and not self._stopping.is_set():
            entry = min(self._lane, key=lambda e: e.delivery.event.number if e.delivery.event else 0)
            rank = await self._rank(entry.delivery)
            if rank == "next":
                await self._work(self._lane)
            elif rank == "early" and time.monotonic() - entry.since < self._hold_s:
                self._lane_grew.clear()
                try:
                    await asyncio.wait_for(self._lane_grew.wait(), LANE_RECHECK_S)
                except asyncio.TimeoutError:
                    pass
                continue
            self._lane.remove(entry)
            await self._decide([entry.msg])

    async def _rank(self, delivery: Delivery) -> str:
        """`next` when the rule would apply the event now (the naive group applies everything), else
        `early` or `done` (applied before, or not an event at all)."""
        event = delivery.event
        if event is None:
            return "done"
        if not guards(self._mode):
            return "next"
        last = await self._db.last_number(event.user_id)
        return "next" if event.number == last + 1 else "early" if event.number > last + 1 else "done"

    async def _work(self, waiting: list[_Waiting]) -> None:
        """Spend the slow user's time on one event, telling the server we hold `waiting`; the slow user
        made normal ends it at once."""
        deadline = time.monotonic() + self.fault.slow_user_ms / 1000
        self.fault.slow_user_changed.clear()
        while (left := deadline - time.monotonic()) > 0 and self.fault.slow_user is not None:
            now = time.monotonic()
            for entry in waiting:
                if now - entry.touched >= self._ack_wait_s / 2:
                    entry.touched = now
                    await self._settle(entry.msg.in_progress())
            try:
                await asyncio.wait_for(self.fault.slow_user_changed.wait(), min(left, self._ack_wait_s / 4))
            except asyncio.TimeoutError:
                pass

    async def release(self) -> None:
        """Hand the lane's events back to the server now (a draining listener)."""
        if self._lane_task is not None:
            self._lane_task.cancel()
            await asyncio.gather(self._lane_task, return_exceptions=True)
        lane, self._lane = self._lane, []
        for entry in lane:
            await self._settle(entry.msg.nak())
