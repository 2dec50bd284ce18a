"""The process supervisor: starts listener processes and breaks them on purpose.

Each listener is its own OS process, so "kill" is a real SIGKILL and "pause" a real SIGSTOP. The
supervisor signals only processes it started, by pid, and the kernel ends them if we die first.
Listeners inherit this process's environment, and with it the NATS credentials and TLS files
(publisher/credentials.py); a URL with a secret in it goes there too, never on their command line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dashboard.lab.logs import listener_log
from dashboard.lab.natsserver import die_with_parent
from listeners.accounts import Mode
from listeners.groups import group_for_mode
from listeners.partitions import DEFAULT_PARTITIONS, home_partitions
from listeners.status import failure_prefix
from publisher.credentials import url_for_child
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S

GUARDED_NAMES = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
# The other groups' listeners are numbered: N1, N2... and P1, P2...
NAME_PREFIX = {"naive": "N", "partitioned": "P"}


class SupervisorError(RuntimeError):
    """A request the supervisor cannot carry out, such as an unknown listener name."""


@dataclass(frozen=True, slots=True)
class Member:
    """A listener process as the supervisor sees it at one moment: what the dashboard shows."""

    name: str
    mode: Mode
    group: str
    pid: int | None
    state: str
    restarts: int = 0
    exit_code: int | None = None
    reason: str | None = None  # why it ended by itself, in its own words


@dataclass(slots=True)
class ListenerProcess:
    name: str
    mode: Mode
    process: subprocess.Popen | None = None
    state: str = "starting"  # running, paused, killed, crashed, exited, restarting, stopped
    exit_code: int | None = None
    # Why the process ended by itself: the last line it wrote on stderr (see `natslab listener`).
    reason: str | None = None
    restarts: int = 0
    output: Path | None = None  # where its stdout and stderr go
    output_offset: int = 0  # the size of `output` when this process started

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def group(self) -> str:
        return group_for_mode(self.mode).name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def snapshot(self) -> Member:
        return Member(
            self.name, self.mode, self.group, self.pid, self.state, self.restarts, self.exit_code, self.reason
        )


def last_words(entry: ListenerProcess, limit: int = 4096) -> str | None:
    """The last line the entry's current process wrote to its output (its error, when it failed)."""
    if entry.output is None:
        return None
    try:
        with open(entry.output, "rb") as out:
            size = out.seek(0, os.SEEK_END)
            out.seek(max(entry.output_offset, size - limit))
            text = out.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix(failure_prefix(entry.name))[:300] if lines else None


class Supervisor:
    """Owns the listener processes of both queue groups."""

    def __init__(
        self,
        nats_url: str,
        data_dir: Path,
        *,
        ack_wait_s: float,
        defer: str = "nak",
        batch: int = 100,
        nats_timeout_s: float = DEFAULT_NATS_TIMEOUT_S,
        gap_timeout_s: float | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        partitioned: int = 2,
    ) -> None:
        self.nats_url = nats_url
        self.partitions = partitions
        self.partitioned = partitioned  # the partitioned group's size: P1..P<n> each have home partitions
        self.data_dir = data_dir
        self.ack_wait_s = ack_wait_s
        self.defer = defer
        self.batch = batch
        self.nats_timeout_s = nats_timeout_s
        self.gap_timeout_s = gap_timeout_s
        self.listeners: dict[str, ListenerProcess] = {}

    def next_name(self, mode: Mode) -> str:
        if mode == "guarded":
            for name in GUARDED_NAMES:
                if name not in self.listeners:
                    return name
            raise SupervisorError("no listener names left")
        prefix = NAME_PREFIX[mode]
        number = 1
        while f"{prefix}{number}" in self.listeners:
            number += 1
        return f"{prefix}{number}"

    def home(self, name: str) -> list[int]:
        """The partitions partitioned listener P<i> pulls from the start (listeners/partitions.py)."""
        index = int(name[1:]) if name[1:].isdigit() else 0
        return home_partitions(index, self.partitioned, self.partitions)

    def command(self, name: str, mode: Mode, slow_ms: int = 0) -> list[str]:
        partitioned = ["--partitions", str(self.partitions), "--home", ",".join(map(str, self.home(name)))]
        return [
            sys.executable, "-m", "dashboard.commands", "listener",
            "--name", name,
            "--mode", mode,
            *url_for_child(self.nats_url)[0],
            "--data-dir", str(self.data_dir),
            "--ack-wait", str(self.ack_wait_s),
            "--defer", self.defer,
            "--batch", str(self.batch),
            "--slow-ms", str(slow_ms),
            "--nats-timeout", str(self.nats_timeout_s),
            "--parent-pid", str(os.getpid()),
            *(partitioned if mode == "partitioned" else []),
        ] + (["--gap-timeout", str(self.gap_timeout_s)] if self.gap_timeout_s is not None else [])  # fmt: skip

    def environment(self) -> dict[str, str] | None:
        """A listener's environment: this process's (None), plus the URL when it carries a secret."""
        extra = url_for_child(self.nats_url)[1]
        return {**os.environ, **extra} if extra else None

    def spawn(self, mode: Mode, name: str | None = None, slow_ms: int = 0) -> ListenerProcess:
        name = name or self.next_name(mode)
        entry = self.listeners.get(name)
        if entry is not None and entry.alive:
            raise SupervisorError(f"listener {name} is already running")
        output = listener_log(self.data_dir, name, ".out")
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "ab") as out:
            offset = out.tell()
            process = subprocess.Popen(
                self.command(name, mode, slow_ms),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            )
        if entry is None:
            entry = ListenerProcess(name, mode)
            self.listeners[name] = entry
        else:
            entry.restarts += 1
        entry.process = process
        entry.state = "running"
        entry.exit_code = None
        entry.reason = None
        entry.output, entry.output_offset = output, offset
        return entry

    def get(self, name: str) -> ListenerProcess:
        try:
            return self.listeners[name]
        except KeyError:
            raise SupervisorError(f"no listener named {name!r}") from None

    def members(self, mode: Mode) -> list[ListenerProcess]:
        return [entry for entry in self.listeners.values() if entry.mode == mode]

    def _running(self, name: str) -> subprocess.Popen:
        entry = self.get(name)
        if not entry.alive or entry.process is None:
            raise SupervisorError(f"listener {name} is not running")
        return entry.process

    def kill(self, name: str) -> ListenerProcess:
        """SIGKILL: the listener dies holding whatever it fetched; those events come back after the ack wait."""
        process = self._running(name)
        process.send_signal(signal.SIGKILL)
        process.wait()
        entry = self.listeners[name]
        entry.state, entry.exit_code = "killed", process.returncode
        return entry

    def pause(self, name: str) -> ListenerProcess:
        """SIGSTOP: the listener is frozen holding what it fetched, its connection open."""
        self._running(name).send_signal(signal.SIGSTOP)
        self.listeners[name].state = "paused"
        return self.listeners[name]

    def resume(self, name: str) -> ListenerProcess:
        self._running(name).send_signal(signal.SIGCONT)
        self.listeners[name].state = "running"
        return self.listeners[name]

    def restart(self, name: str) -> ListenerProcess:
        entry = self.get(name)
        if entry.alive:
            self.kill(name)
        entry.state = "restarting"
        return self.spawn(entry.mode, name)

    def poll(self) -> list[ListenerProcess]:
        """Notice listeners that exited by themselves (injected crash, error); returns those that changed."""
        changed = []
        for entry in self.listeners.values():
            if entry.process is None or entry.state in ("killed", "crashed", "exited", "stopped"):
                continue
            code = entry.process.poll()
            if code is not None:
                entry.exit_code = code
                entry.state = "crashed" if code != 0 else "exited"
                entry.reason = f"ended by {signal.Signals(-code).name}" if code < 0 else last_words(entry)
                changed.append(entry)
        return changed

    async def stop_all(self, timeout: float = 5.0) -> None:
        """SIGTERM (after SIGCONT for paused ones) so listeners drain; SIGKILL what is left at the deadline."""
        alive = [entry for entry in self.listeners.values() if entry.alive]
        for entry in alive:
            assert entry.process is not None
            entry.process.send_signal(signal.SIGCONT)
            entry.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(entry.alive for entry in alive) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for entry in alive:
            assert entry.process is not None
            if entry.process.poll() is None:
                entry.process.kill()
            entry.process.wait()
            entry.exit_code = entry.process.returncode
            entry.state = "stopped"
