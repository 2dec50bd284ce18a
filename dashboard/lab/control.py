"""What kill, pause, resume, restart, crash, slow, normal and add mean: the one place that breaks a lab.

Process faults are signals to the listener processes the supervisor started (SIGKILL, SIGSTOP,
SIGCONT); the others are commands on the listener's control subject (docs/design.md, "Listener
control"). The dashboard's keys, the scenarios and chaos runs all come here through `Lab.control`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal, get_args

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from dashboard.lab.supervisor import Supervisor, SupervisorError
from dashboard.lab.waits import LabError
from listeners.accounts import Mode
from listeners.status import control_subject

log = logging.getLogger(__name__)

# `slow`: how long a slowed listener takes per event, unless told otherwise.
SLOW_MS = 2000

Action = Literal["kill", "pause", "resume", "restart", "crash", "slow", "normal", "add", "slow-user"]
ACTIONS: tuple[str, ...] = get_args(Action)


async def send_control(nc: NATS, name: str, command: str, timeout: float = 2.0, within: float = 10.0) -> None:
    """Send a fault-injection command (docs/design.md, "Listener control"); LabError unless it says ok.

    A listener whose connection is moving to another node of a cluster (its node died) has no
    subscription for a moment, or one the cluster still routes to the dead node: "no responders" and
    a timeout are asked again until `within` has passed (every command is idempotent: a listener told
    `normal` twice is normal).
    """
    deadline = time.monotonic() + within
    while True:
        try:
            reply = await nc.request(control_subject(name), command.encode(), timeout=timeout)
            break
        except (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise LabError(f"listener {name} did not answer {command!r}: {exc!r}") from exc
            await asyncio.sleep(0.1)
        except Exception as exc:
            raise LabError(f"listener {name} did not answer {command!r}: {exc!r}") from exc
    text = reply.data.decode()
    if text != "ok":
        raise LabError(f"listener {name}: {text}")


async def slow_user(supervisor: Supervisor, nc: NATS, user: str, ms: int) -> str:
    """Make every event of `user` take `ms` to process in every running listener of every group (0:
    back to normal). A listener started later does not know."""
    names = [entry.name for entry in supervisor.listeners.values() if entry.alive and entry.state != "paused"]
    await asyncio.gather(*(send_control(nc, name, f"slow-user {user} {ms}") for name in names))
    if not ms:
        return f"{user}'s events are processed at normal speed again"
    return f"{user}'s events now take {ms} ms each to process, in every group"


async def control(
    supervisor: Supervisor, nc: NATS, action: Action, name: str = "", *, mode: Mode = "guarded", slow_ms: int = SLOW_MS
) -> str:
    """Do `action` to listener `name`; `add` starts a new listener of `mode` instead.

    kill, pause and resume are SIGKILL, SIGSTOP and SIGCONT; restart kills the listener if it runs and
    starts it again under the same name; crash arms an exit right after its next commit, before the
    ack; slow makes it take `slow_ms` per event (it tells the server it is still working), normal
    undoes crash and slow. slow-user makes every event of user `name` take `slow_ms` in every listener.

    The keys, the scenarios and chaos runs all break the lab through here. Returns what was done,
    in words; raises LabError when it cannot be done (no such listener, not running, no answer).
    """
    try:
        if action == "kill":
            supervisor.kill(name)
            done = f"{name} killed (SIGKILL)"
        elif action == "pause":
            supervisor.pause(name)
            done = f"{name} paused (SIGSTOP)"
        elif action == "resume":
            supervisor.resume(name)
            done = f"{name} resumed (SIGCONT)"
        elif action == "restart":
            supervisor.restart(name)
            done = f"{name} restarted"
        elif action == "add":
            entry = supervisor.spawn(mode)
            done = f"listener {entry.name} added to {entry.group}"
        elif action == "crash":
            await send_control(nc, name, "crash-after-commit")
            done = f"{name} will crash after its next commit, before acking"
        elif action == "slow":
            await send_control(nc, name, f"slow {slow_ms}")
            done = f"{name} slowed to {slow_ms} ms per event"
        elif action == "normal":
            await send_control(nc, name, "normal")
            done = f"{name} back to normal speed"
        elif action == "slow-user":  # `name` is a user here, and slow_ms 0 makes them normal again
            done = await slow_user(supervisor, nc, name, slow_ms)
        else:
            raise LabError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    except SupervisorError as exc:
        raise LabError(str(exc)) from None
    log.info("%s", done)
    return done
