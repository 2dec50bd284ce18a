"""Faults a listener lets the lab inject into it (docs/design.md, "Listener control"): a crash right
after the next commit, and slowness. They arrive as commands on the listener's control subject."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from listeners.status import parse_control


@dataclass(slots=True)
class Faults:
    crash: str | None = None  # "after-commit" when armed
    slow_ms: int = 0
    slow_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # One slow user: each of their events takes this long to process, wherever it goes.
    slow_user: str | None = None
    slow_user_ms: int = 0
    slow_user_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, text: str) -> str:
        """Carry out one control command; the reply: `ok`, or `error: ...` for an unknown command."""
        try:
            command, value, user = parse_control(text)
        except ValueError as exc:
            return f"error: {exc}"
        if command == "crash-after-commit":
            self.crash = "after-commit"
        elif command == "slow":
            self.slow_ms = value
            self.slow_changed.set()
        elif command == "slow-user":
            self.slow_user, self.slow_user_ms = (user, value) if value else (None, 0)
            self.slow_user_changed.set()
        else:
            self.crash = None
            self.slow_ms = 0
            self.slow_user, self.slow_user_ms = None, 0
            self.slow_changed.set()
            self.slow_user_changed.set()
        return "ok"

    def status_fields(self) -> dict[str, Any]:
        """What the status message says of the faults armed."""
        return {
            "slow_ms": self.slow_ms,
            "crash_armed": self.crash,
            "slow_user": self.slow_user,
            "slow_user_ms": self.slow_user_ms,
        }

    def is_slow(self, msg: Msg) -> bool:
        """Whether `msg` is an event of the slow user (by its subject's user token)."""
        if self.slow_user is None:
            return False
        tokens = msg.subject.split(".")
        return len(tokens) >= 3 and tokens[2] == self.slow_user

    async def slow_down(self, msgs: list[Msg], ack_wait_s: float, settle: Callable[[Awaitable[None]], Awaitable[None]]) -> None:
        """Work slowly on `msgs`, telling the server we are still on them (`in_progress`) every half
        ack wait, as a slow but live worker does: only a dead or frozen listener's events come back.
        A new speed (or `normal`) ends the wait at once."""
        self.slow_changed.clear()
        deadline = time.monotonic() + self.slow_ms * len(msgs) / 1000
        heartbeat = max(0.05, ack_wait_s / 2)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self.slow_changed.wait(), timeout=min(remaining, heartbeat))
                return
            except asyncio.TimeoutError:
                pass
            if deadline - time.monotonic() > 0:
                for msg in msgs:
                    await settle(msg.in_progress())
