"""Shared fixtures: a real nats-server per test on a free loopback port, and labs on temp dirs.

Every test is also checked for what it leaves behind: processes it started (found by a marker in
their environment, which every child and grandchild inherits) and threads that would keep pytest
from exiting. What is left is ended, by pid, and the test fails naming it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from leftovers import PROCESS_MARK, processes_marked

from dashboard.lab.host import Hosted, open_lab
from dashboard.lab.lab import Lab
from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.probes import wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.waits import connect_with_retry

# Short enough that redelivery tests finish quickly, long enough for a loaded 2-core CI machine.
TEST_ACK_WAIT_S = 2.0

# How long a test's processes and threads may take to end after its fixtures stopped them.
LEFTOVER_GRACE_S = 10.0


def lingering_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since `before` that would keep the interpreter from exiting."""
    return [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]


@pytest.fixture(autouse=True)
def leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    token = uuid.uuid4().hex
    monkeypatch.setenv(PROCESS_MARK, token)
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        processes, threads = processes_marked(token), lingering_threads(threads_before)
        if not (processes or threads) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    problems = [f"process {pid} still running: {command}" for pid, command in processes.items()]
    problems += [f"thread {thread.name} still running" for thread in threads]
    if problems:
        pytest.fail("the test left behind:\n  " + "\n  ".join(problems), pytrace=False)


_exit_status = 0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Never hang at exit: a non-daemon thread left by a failed test would keep pytest alive for good."""
    threads = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if threads:
        names = ", ".join(thread.name for thread in threads)
        sys.stderr.write(f"natslab tests: exiting past {len(threads)} leftover thread(s): {names}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status or 1)


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "nats-store", tmp_path / "nats-server.log")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer):
    client = await connect_with_retry(nats_server.url, "natslab-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No partitioned group unless a test asks for one: its two listeners and sourced stream cost CPU
    # that the tests of the other groups share.
    return Settings(data_dir=tmp_path / "data", ack_wait_s=TEST_ACK_WAIT_S, partitioned=0)


LabFactory = Callable[..., Awaitable[Lab]]


@pytest.fixture
async def make_lab(settings: Settings) -> AsyncIterator[LabFactory]:
    """Start a lab (embedded server, publisher, listener processes); every lab is stopped afterwards."""
    labs: list[Lab] = []

    async def factory(listeners: int = 2, naive: int = 0, partitioned: int = 0, **overrides) -> Lab:
        for key, value in overrides.items():
            setattr(settings, key, value)
        lab = Lab(settings)
        labs.append(lab)
        await lab.start(listeners=listeners, naive=naive, partitioned=partitioned)
        return lab

    try:
        yield factory
    finally:
        for lab in labs:
            await lab.stop()


@pytest.fixture
async def hosted(settings: Settings) -> AsyncIterator[Hosted]:
    """A lab hosted by the test process as a service (`open_lab`), its listeners ready; stopped afterwards."""
    url, lab = await open_lab(settings, "the test")
    assert lab is not None, f"a lab already answered at {url}"
    try:
        await wait_listeners_ready(lab.lab)
        yield lab
    finally:
        await lab.stop("the test ended")
