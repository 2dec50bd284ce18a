"""Connecting to NATS and declaring the `ACCOUNT_EVENTS` stream: the event history.

The stream keeps every event (limits retention, never work-queue retention, which would delete the
history the lab shows). Declaring it is idempotent so every process can call `ensure_stream`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.errors import NotFoundError

from publisher.events import STREAM_NAME, STREAM_SUBJECTS

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 300.0
# The most nodes that keep a copy of the stream when natslab picks the number: three survive one loss.
MAX_REPLICAS = 3
# How long a command keeps trying to reach NATS before it gives up with a clear line
# (`--nats-timeout`, env NATSLAB_NATS_TIMEOUT). Long enough for a server restart, short enough that a
# command whose server is gone for good ends by itself.
DEFAULT_NATS_TIMEOUT_S = 30.0
PING_INTERVAL_S = 2


def stream_config(replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        num_replicas=replicas,
        name=STREAM_NAME,
        subjects=list(STREAM_SUBJECTS),
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


async def ensure_stream(nc: NATS, replicas: int | None = None) -> api.StreamInfo:
    """Create the stream, or bring an existing one to our configuration.

    `replicas` is how many nodes of a cluster keep the stream; None keeps what an existing stream has,
    so a listener or a `natslab publish` never shrinks a replicated stream, and gives a new stream one
    replica per server the connection knows of, up to MAX_REPLICAS (a cluster tells its clients every
    node's URL).
    """
    js = nc.jetstream()
    try:
        info = await js.stream_info(STREAM_NAME)
    except NotFoundError:
        known = len({server.netloc for server in nc.servers})
        return await js.add_stream(stream_config(replicas or min(MAX_REPLICAS, max(1, known))))
    return await js.update_stream(stream_config(replicas or info.config.num_replicas or 1))


async def connect(
    url: str,
    name: str,
    *,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    connect_timeout: float = 2.0,
    first_connect_timeout: float = 5.0,
) -> NATS:
    """Connect with endless reconnects: a restarted server must never end a lab process.

    Endless reconnects also make nats-py retry a first connect forever, so the first connect is
    bounded: an unreachable server is reported as a ConnectionError instead of a hang.
    """

    async def error_cb(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    options: dict[str, Any] = {
        "servers": url.split(","),  # every node of a cluster: the client moves to another when one goes
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": connect_timeout,
        "error_cb": error_cb,
        # A frozen server (SIGSTOP, a stalled node) keeps its sockets open: only unanswered pings tell,
        # so a client moves to another node of a cluster within about three intervals.
        "ping_interval": PING_INTERVAL_S,
        "max_outstanding_pings": 2,
    }
    if on_disconnect is not None:
        options["disconnected_cb"] = on_disconnect
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect
    try:
        return await asyncio.wait_for(nats.connect(**options), timeout=first_connect_timeout)
    except asyncio.TimeoutError:
        raise ConnectionError(f"no answer from NATS at {url} within {first_connect_timeout:.1f} s") from None
