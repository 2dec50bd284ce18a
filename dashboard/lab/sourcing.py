"""A stalled source of the partitioned stream, and the nudge that restarts it (docs/design.md, "Command
line", `natslab chaos`).

nats-server retries a stream source that failed (its source stream had no leader, a node went away)
after a backoff that grows with the failures: 5 s x 2 x failures, up to 2 minutes. After a restart of
every node of a cluster, `ACCOUNT_EVENTS_P` was seen to stop sourcing `ACCOUNT_EVENTS` for 30 s and
more while the other groups had long drained. A leader stepdown makes the new leader set its sources
up afresh, and sourcing goes on at once.
"""

from __future__ import annotations

import json
import logging
import time

from nats.aio.client import Client as NATS

from listeners.partitions import API_TIMEOUT_S, PARTITIONED_STREAM
from publisher.events import STREAM_NAME

log = logging.getLogger(__name__)

# How long the partitioned stream may stay behind ACCOUNT_EVENTS without sourcing anything.
STALL_S = 5.0


class SourcingWatch:
    """Looks at the partitioned stream's sourcing; when it has stood still behind its source for
    STALL_S, steps its leader down (a cluster has one to step down)."""

    def __init__(self, nc: NATS, stall_s: float = STALL_S) -> None:
        self.nc = nc
        self.stall_s = stall_s
        self._sourced = -1
        self._since = time.monotonic()

    async def look(self) -> str | None:
        """One look; what it did, in words, when it nudged the stream."""
        js = self.nc.jetstream()
        source = (await js.stream_info(STREAM_NAME)).state.messages
        sourced = (await js.stream_info(PARTITIONED_STREAM)).state.messages
        now = time.monotonic()
        if sourced != self._sourced or sourced >= source:
            self._sourced, self._since = sourced, now
            return None
        stalled = now - self._since
        if stalled < self.stall_s:
            return None
        self._since = now
        reply = await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{PARTITIONED_STREAM}", b"", timeout=API_TIMEOUT_S)
        error = json.loads(reply.data).get("error")
        done = (
            f"{PARTITIONED_STREAM} sourced nothing for {stalled:.0f} s ({sourced} of {source} events):"
            f" {'its leader stepped down' if error is None else 'stepdown refused: ' + str(error.get('description'))}"
        )
        log.warning("%s", done)
        return done
