"""The dashboard served by textual-serve, in a subprocess of the test, on a free loopback port.

textual-serve starts one app process per websocket (through `/bin/sh -c COMMAND`) and tells it to
quit when that websocket closes; the app then stops its lab (embedded NATS server and listeners).
Closing every client first and then the server is the order in which all of it ends by itself. A
server that is killed instead leaves its app processes running (a Textual app under textual-serve does
not end when its input reaches end-of-file, and one whose output is gone does not finish quitting), so
the teardown here also ends, by pid, whatever the server started and left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

HOST = "127.0.0.1"
# The app needs a few seconds to stop its lab once its websocket closed; a loaded 2-core machine more.
APPS_END_S = 30.0
# How long the server may take to exit on SIGTERM with no client left (it exits at once when idle).
SERVER_END_S = 10.0
# How long a process left behind may take to end on SIGTERM before it is killed.
LEFTOVER_END_S = 5.0

SERVE_SCRIPT = """
import sys
from textual_serve.server import Server
command, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
Server(command, host=host, port=port, title="natslab").serve()
"""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def dashboard_command(data_dir: Path, ack_wait_s: float = 2.0) -> str:
    """The shell command textual-serve runs per websocket: this interpreter's dashboard on `data_dir`."""
    return shlex.join(
        [sys.executable, "-m", "dashboard.commands", "--data-dir", str(data_dir), "--ack-wait", f"{ack_wait_s:g}"]
    )


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return None if fields[0] == b"Z" else int(fields[1])


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(root: int) -> dict[int, str]:
    """The live processes under `root` (children, grandchildren...): pid -> command line."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return {pid: _command_of(pid) for pid in sorted(found)}


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


async def _until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition()` until it holds (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


@dataclass
class ServedDashboard:
    """A running textual-serve server: where it listens, its process, and its log file."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """The page's address; the page's websocket is at `/ws` under it."""
        return f"http://{HOST}:{self.port}/"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def apps(self) -> dict[int, str]:
        """The processes the server started and that still run (app shells, apps, their labs)."""
        return descendants(self.process.pid)

    async def wait_for_no_apps(self, timeout: float = APPS_END_S) -> None:
        """Wait until every app process (and its lab) has ended; AssertionError naming those left."""
        if not await _until(lambda: not self.apps(), timeout):
            left = "\n  ".join(f"{pid}: {command}" for pid, command in self.apps().items())
            raise AssertionError(f"the served apps still run {timeout:g} s after their clients closed:\n  {left}")

    async def stop(self) -> None:
        """Let the apps end (their clients are closed by now), then end the server, then anything left."""
        await _until(lambda: not self.apps(), APPS_END_S)
        left = self.apps()
        self.process.terminate()
        if not await _until(lambda: self.process.poll() is not None, SERVER_END_S):
            self.process.kill()
        self.process.wait()
        for pid in left:  # orphans now: found before the server went, ended by the pids found then
            _signal(pid, signal.SIGTERM)
        if not await _until(lambda: all(_parent_of(pid) is None for pid in left), LEFTOVER_END_S):
            for pid in left:
                _signal(pid, signal.SIGKILL)


async def _answers_http(url: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url) as response:
                return response.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


@contextlib.asynccontextmanager
async def serve(command: str, log_path: Path, startup_timeout: float = 60.0) -> AsyncIterator[ServedDashboard]:
    """Run textual-serve for `command` until the block ends; its output goes to `log_path`.

    Yields once the page answers HTTP. On the way out, whether the block passed or failed, the apps
    are given time to end, then the server and whatever it left are ended by pid.
    """
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE_SCRIPT, command, HOST, str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = ServedDashboard(process, port, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while not await _answers_http(served.url):
            if process.poll() is not None:
                raise AssertionError(f"textual-serve exited with {process.returncode}:\n{served.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"textual-serve did not answer within {startup_timeout:g} s:\n{served.log_text()}")
            await asyncio.sleep(0.1)
        yield served
    finally:
        await served.stop()
