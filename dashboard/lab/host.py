"""Hosting a lab, and finding the one that runs: what `natslab up`, `natslab web` and the dashboard
decide before anything else.

One process at a time hosts the lab of a data dir. It holds the data dir's lock file (`lab.lock`,
an flock that the kernel drops when the process dies, however it dies) and writes in it who it is
and where its server is, so other processes on this machine find the lab even on an external
server. The lab answers on its server's control subject (`dashboard.lab.protocol`), and that answer
is what counts: a process elsewhere, given only the server's URL, attaches the same way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dashboard.lab.client import LabStarting, NoLab, ping
from dashboard.lab.lab import Lab
from dashboard.lab.service import LabService
from dashboard.lab.settings import Settings
from dashboard.lab.waits import nats_reachable
from publisher.credentials import redact_url, strip_userinfo

log = logging.getLogger(__name__)

LOCK_FILE = "lab.lock"
# Set by `natslab web` for the dashboards of its browser tabs: the pid they end with (dashboard/ui/run.py).
WEB_PID_VARIABLE = "NATSLAB_WEB_PID"


class HostLock:
    """The data dir's lab lock: held by the one process that hosts a lab there, for its whole life."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, command: str) -> bool:
        """Take the lock, and say who holds it; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.record(command=command, url=None)
        return True

    def record(self, **fields: Any) -> None:
        """Write who holds the lock (pid, command, the server's URL once known)."""
        assert self._fd is not None, "the lock is not held"
        text = json.dumps({"pid": os.getpid(), **fields}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_holder(data_dir: Path) -> dict[str, Any] | None:
    """Who hosts the data dir's lab (pid, command, url), or None when nobody holds its lock."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: read what the holder wrote (empty for a moment at its start)
            try:
                data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                data = {}
            return data if isinstance(data, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def explicit_url(settings: Settings) -> str | None:
    return settings.nats_url or settings.env_nats_url


def lab_url(settings: Settings) -> str | None:
    """Where the lab of this data dir answers, as far as this machine can tell: the URL given, else
    the lock holder's server, else the data dir's embedded server."""
    url = explicit_url(settings)
    if url:
        return url
    holder = lock_holder(settings.data_dir)
    if holder and holder.get("url"):
        return str(holder["url"])
    return settings.discovered_nats_url()


def describe_holder(settings: Settings) -> str:
    holder = lock_holder(settings.data_dir)
    if not holder:
        return ""
    return f"{holder.get('command', 'a process')}, pid {holder.get('pid', '?')}"


@dataclass(slots=True)
class Hosted:
    """A lab this process started and serves: stopping it stops everything it started."""

    lab: Lab
    service: LabService
    lock: HostLock

    async def stop(self, reason: str) -> None:
        try:
            await self.service.stop(reason)
        finally:
            try:
                await self.lab.stop()
            finally:
                self.lock.release()


async def host(
    settings: Settings,
    command: str,
    lock: HostLock,
    *,
    listeners: int | None = None,
    naive: int | None = None,
    caption_read_s: float | None = None,
) -> Hosted:
    """Start a lab and serve it, under `lock` (held); on failure nothing is left running."""
    lab = Lab(settings)
    await lab.start(listeners=listeners, naive=naive)
    service = LabService(lab, command, caption_read_s=caption_read_s)
    try:
        # Without credentials: whoever reads the lock finds the server, and brings their own.
        lock.record(command=command, url=strip_userinfo(lab.url))
        await service.start()
    except BaseException:
        await lab.stop()
        raise
    return Hosted(lab, service, lock)


async def server_to_host_on(settings: Settings) -> str | None:
    """The NATS server a new lab should use: the one given, else a server already running on this
    data dir (`natslab server`), else None: the lab starts its own."""
    url = explicit_url(settings)
    if url:
        return url
    found = settings.discovered_nats_url()
    return found if found and await nats_reachable(found) else None


async def open_lab(
    settings: Settings, command: str, *, attach_only: bool = False, caption_read_s: float | None = None
) -> tuple[str, Hosted | None]:
    """The URL of the lab to attach to, and the lab itself when this process had to start it.

    A lab already answering (on this data dir, or on the server given) is attached to. Otherwise,
    unless `attach_only`, this process takes the data dir's lock and hosts one. NoLab when there is
    no lab and this process may not (or, another holding the lock, need not) start one: the caller
    tries again, since a host that holds the lock may still be starting.
    """
    if not attach_only:
        lock = HostLock(settings.data_dir)
        if lock.acquire(command):
            try:
                url = await server_to_host_on(settings)
                if url is not None and await ping(url) is not None:
                    lock.release()  # a lab on that server, hosted from another data dir or machine
                    return url, None
                hosted = await host(replace(settings, nats_url=url), command, lock, caption_read_s=caption_read_s)
            except BaseException:
                lock.release()
                raise
            return hosted.lab.url, hosted
    url = lab_url(settings)
    if url is not None and await ping(url) is not None:
        return url, None
    holder = describe_holder(settings)
    if holder:
        raise LabStarting(f"the lab on {settings.data_dir} is starting ({holder})")
    raise NoLab(f"no lab runs on {settings.data_dir}" + (f" or at {redact_url(url)}" if url else ""))
