"""The chaos run's nudge for a partitioned stream that stopped sourcing, on a fake connection."""

from __future__ import annotations

import json
from types import SimpleNamespace

from dashboard.lab.sourcing import SourcingWatch
from listeners.partitions import PARTITIONED_STREAM
from publisher.events import STREAM_NAME


class FakeNats:
    """Stream message counts as a test sets them; the stepdown requests it was sent."""

    def __init__(self) -> None:
        self.messages = {STREAM_NAME: 10, PARTITIONED_STREAM: 4}
        self.requests: list[str] = []

    def jetstream(self) -> FakeNats:
        return self

    async def stream_info(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(state=SimpleNamespace(messages=self.messages[name]))

    async def request(self, subject: str, payload: bytes, timeout: float) -> SimpleNamespace:
        self.requests.append(subject)
        return SimpleNamespace(data=json.dumps({"success": True}).encode())


async def test_only_a_stream_that_stood_still_behind_its_source_is_stepped_down() -> None:
    nc = FakeNats()
    watch = SourcingWatch(nc, stall_s=0.0)  # type: ignore[arg-type]
    assert await watch.look() is None  # the first look only notes where it is
    done = await watch.look()
    assert done == f"{PARTITIONED_STREAM} sourced nothing for 0 s (4 of 10 events): its leader stepped down"
    assert nc.requests == [f"$JS.API.STREAM.LEADER.STEPDOWN.{PARTITIONED_STREAM}"]
    nc.messages[PARTITIONED_STREAM] = 7  # sourcing again: nothing to do
    assert await watch.look() is None
    nc.messages[PARTITIONED_STREAM] = 10  # caught up, and staying there: nothing to do either
    assert await watch.look() is None and await watch.look() is None
    assert len(nc.requests) == 1


async def test_a_stall_shorter_than_the_limit_is_left_alone() -> None:
    nc = FakeNats()
    watch = SourcingWatch(nc, stall_s=60.0)  # type: ignore[arg-type]
    assert [await watch.look() for _ in range(3)] == [None, None, None]
    assert nc.requests == []
