"""`natslab web` in a subprocess of the test, on a free loopback port.

textual-serve (inside `natslab web`) starts one dashboard per websocket (through `/bin/sh -c
COMMAND`, the command being `natslab --attach`) and tells it to quit when that websocket closes; an
attached dashboard then only disconnects. `natslab web` starts a lab (`natslab up`) when none runs on
the data dir and stops it when it ends. Closing every client first and then `natslab web` is the
order in which all of it ends by itself; the teardown here also ends, by pid, whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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

NATSLAB = [sys.executable, "-m", "dashboard.commands"]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


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
        """The dashboards the server started for its clients that still run (and their shells)."""
        return {pid: command for pid, command in descendants(self.process.pid).items() if "--attach" in command}

    async def wait_for_no_apps(self, timeout: float = APPS_END_S) -> None:
        """Wait until every app process (and its lab) has ended; AssertionError naming those left."""
        if not await _until(lambda: not self.apps(), timeout):
            left = "\n  ".join(f"{pid}: {command}" for pid, command in self.apps().items())
            raise AssertionError(f"the served apps still run {timeout:g} s after their clients closed:\n  {left}")

    async def stop(self) -> None:
        """Let the apps end (their clients are closed by now), then end the server (and the lab it
        started), then anything left."""
        await _until(lambda: not self.apps(), APPS_END_S)
        left = descendants(self.process.pid)
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
async def serve(data_dir: Path, log_path: Path, startup_timeout: float = 60.0) -> AsyncIterator[ServedDashboard]:
    """Run `natslab web` on `data_dir` (ack wait 2 s for a lab it starts) until the block ends; its
    output goes to `log_path`.

    Yields once the page answers HTTP. On the way out, whether the block passed or failed, the apps
    are given time to end, then the server and whatever it left are ended by pid.
    """
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*NATSLAB, "web", "--data-dir", str(data_dir), "--port", str(port), "--ack-wait", "2"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = ServedDashboard(process, port, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while not await _answers_http(served.url):
            if process.poll() is not None:
                raise AssertionError(f"natslab web exited with {process.returncode}:\n{served.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"natslab web did not answer within {startup_timeout:g} s:\n{served.log_text()}")
            await asyncio.sleep(0.1)
        yield served
    finally:
        await served.stop()
