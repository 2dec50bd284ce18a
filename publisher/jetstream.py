"""Connecting to NATS and declaring the `ACCOUNT_EVENTS` stream: the event history.

The stream keeps every event (limits retention, never work-queue retention, which would delete the
history the lab shows). Declaring it is idempotent so every process can call `ensure_stream`.

`connect` is the one place natslab connects: to every server of a comma-joined URL, with the
credentials and TLS options of the environment (publisher/credentials.py). A server that refuses
them (a bad password, an untrusted certificate, a client certificate it requires) is `NatsRefused`
at once: trying again will not change its mind.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import NotFoundError

from publisher.credentials import Credentials, CredentialsError, redact_url, split_urls, ssl_reason
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


def cluster_size(nc: NATS) -> int:
    """How many servers the connected server's cluster has, from what it told the client on connecting
    (its cluster's name and every node's client URL); 1 for a server on its own. The URLs a client was
    given say nothing: some may be dead, or of servers that are not one cluster."""
    info = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    return max(1, len(set(info.get("connect_urls") or ())))


async def ensure_stream(nc: NATS, replicas: int | None = None) -> api.StreamInfo:
    """Create the stream, or bring an existing one to our configuration.

    `replicas` is how many nodes of a cluster keep the stream; None keeps what an existing stream has,
    so a listener or a `natslab publish` never shrinks a replicated stream, and gives a new stream one
    replica per node of the server's cluster, up to MAX_REPLICAS.
    """
    js = nc.jetstream()
    try:
        info = await js.stream_info(STREAM_NAME)
    except NotFoundError:
        return await js.add_stream(stream_config(replicas or min(MAX_REPLICAS, cluster_size(nc))))
    return await js.update_stream(stream_config(replicas or info.config.num_replicas or 1))


class NatsRefused(Exception):
    """The server will not let this client in (its credentials, TLS): said in one line, and never
    retried, since trying again would only get the same answer."""


def refusal(exc: BaseException, credentials: Credentials) -> str | None:
    """Why the server refuses this client, from an error of a connect attempt (after "NATS at URL");
    None for an error that may heal by itself (no server yet, a connection dropped)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = "" if credentials.tls_ca else "; give its CA with --tls-ca"
        return f"has a TLS certificate natslab does not trust ({ssl_reason(exc)}){hint}"
    if isinstance(exc, ssl.SSLError):
        reason = ssl_reason(exc)
        if "certificate required" in reason.lower():
            return f"requires a client certificate ({reason}); give one with --tls-cert and --tls-key"
        return f"refused the TLS handshake ({reason})"
    if isinstance(exc, NatsError):
        text = str(exc).removeprefix("nats: ").strip().strip("'") or type(exc).__name__
        if isinstance(exc, AuthorizationError) or "authorization" in text.lower() or "authentication" in text.lower():
            return f"refused the credentials ({text}; natslab gave {credentials.describe()})"
    return None


async def connect(
    url: str,
    name: str,
    *,
    credentials: Credentials | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    connect_timeout: float = 2.0,
    first_connect_timeout: float = 5.0,
) -> NATS:
    """Connect to the servers of `url` (comma-joined) with endless reconnects: a restarted server
    must never end a lab process. The credentials are the environment's unless given.

    Endless reconnects also make nats-py retry a first connect forever, so the first connect is
    bounded: an unreachable server is reported as a ConnectionError instead of a hang, and a server
    that refuses the credentials or the TLS handshake as NatsRefused as soon as it says so.
    """
    credentials = Credentials.from_env() if credentials is None else credentials
    where = f"NATS at {redact_url(url)}"
    try:
        secure = credentials.nats_options()
    except CredentialsError as exc:
        raise NatsRefused(f"cannot connect to {where}: {exc}") from None
    nc = NATS()
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    first: list[BaseException] = []  # the last error of the first connect

    async def error_cb(exc: Exception) -> None:
        if not refused.done():
            first[:] = [exc]
            reason = refusal(exc, credentials)
            if reason is not None:
                refused.set_result(reason)
        log.warning("nats error: %s", exc)

    options: dict[str, Any] = {
        "servers": split_urls(url),
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": connect_timeout,
        "error_cb": error_cb,
        # A frozen server (SIGSTOP, a stalled node) keeps its sockets open: only unanswered pings tell,
        # so a client moves to another node of a cluster within about three intervals.
        "ping_interval": PING_INTERVAL_S,
        "max_outstanding_pings": 2,
        **secure,
    }
    if on_disconnect is not None:
        options["disconnected_cb"] = on_disconnect
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect
    attempt = asyncio.ensure_future(nc.connect(**options))
    try:
        await asyncio.wait({attempt, refused}, timeout=first_connect_timeout, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _abandon(nc, attempt)
        raise
    if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
        if not refused.done():
            refused.cancel()  # from now on an error is a reconnect's, not a refusal of the first connect
        return nc
    await _abandon(nc, attempt)
    if refused.done() and not refused.cancelled():
        raise NatsRefused(f"{where} {refused.result()}")
    if attempt.done() and not attempt.cancelled() and attempt.exception() is not None:
        raise attempt.exception()  # type: ignore[misc]
    last = f" (last error: {first[0]})" if first and str(first[0]) else ""
    raise ConnectionError(f"no answer from {where} within {first_connect_timeout:.1f} s{last}")


async def _abandon(nc: NATS, attempt: asyncio.Future[Any]) -> None:
    """Stop a first connect that will not be waited for, and whatever it left open."""
    attempt.cancel()
    await asyncio.gather(attempt, return_exceptions=True)
    try:
        await nc.close()
    except Exception as exc:  # never connected: nothing much to close
        log.debug("closing an abandoned connect: %r", exc)
