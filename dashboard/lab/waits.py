"""Waiting with deadlines: for a condition, and for a NATS server to answer.

Nothing in natslab waits without a deadline; every wait names what it waited for when it gives up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from publisher.credentials import redact_url, split_urls
from publisher.jetstream import NatsRefused, connect


class LabError(RuntimeError):
    """Something the lab cannot do, said in words a user understands."""


def describe_error(exc: BaseException) -> str:
    """An error in words: its message, or its type's name when it has none (a bare timeout). JetStream's
    answers while a cluster elects a leader have no words of their own: they are given some."""
    if isinstance(exc, (NoRespondersError, NoStreamResponseError)):
        return "no JetStream leader answers (a cluster electing one?)"
    if isinstance(exc, ServiceUnavailableError):
        return "JetStream unavailable for now (a cluster electing a leader?)"
    return str(exc) or type(exc).__name__


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate` until it holds; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def connect_with_retry(url: str, name: str, timeout: float = 10.0, **kwargs: Any) -> NATS:
    """Connect, trying again for `timeout` while no server answers; LabError when none did. A server
    that refuses the credentials or the TLS handshake is NatsRefused at once, never tried again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            remaining = max(0.5, deadline - time.monotonic())
            return await connect(url, name, first_connect_timeout=min(2.0, remaining), **kwargs)
        except NatsRefused:
            raise
        except Exception as exc:
            if time.monotonic() > deadline:
                raise LabError(f"cannot reach NATS at {redact_url(url)} (tried for {timeout:g} s)") from exc
            await asyncio.sleep(0.1)


async def nats_reachable(url: str, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections at the host and port of one of the (comma-joined) URLs:
    worth trying to connect.

    A first connect to a dead server does not fail with endless reconnects configured, so callers
    that must tell a person "unreachable" probe first.
    """
    probes = [asyncio.ensure_future(_accepts_tcp(part, timeout)) for part in split_urls(url)]
    try:
        for probe in asyncio.as_completed(probes):
            if await probe:
                return True
        return False
    finally:
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)


async def _accepts_tcp(url: str, timeout: float) -> bool:
    try:
        parsed = urlsplit(url if "://" in url else f"nats://{url}")
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    except ValueError:
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def close_quietly(nc: NATS) -> None:
    """Close a NATS connection whose server may be gone; whatever the caller did is already decided."""
    try:
        await nc.close()
    except Exception as exc:
        logging.getLogger(__name__).debug("close: %r", exc)


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel `task` (if any) and wait until it has ended; its outcome does not matter any more."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
