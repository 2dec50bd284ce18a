"""Start-up that neither lies nor crashes: a port held by another program, a server that dies, bad
variables, a data dir that cannot be written. Each ends with one line on stderr and a non-zero exit,
writes nothing and leaves nothing running. And the sync mode asked for is the one the server runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from leftovers import running_with

from dashboard.lab import natsserver
from dashboard.lab.natsserver import EmbeddedServer, PortInUse, ServerError
from dashboard.lab.probes import wait_drained, wait_listeners_ready

NATSLAB = [sys.executable, "-m", "dashboard.commands"]
VARIABLES = ("NATSLAB_ACK_WAIT", "NATSLAB_NATS_TIMEOUT", "NATSLAB_SYNC", "NATSLAB_NATS_URL", "NATSLAB_DATA_DIR")


def natslab(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    return subprocess.run(
        [*NATSLAB, *args], capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def port_held_by_another_program() -> Iterator[int]:
    """A loopback port with a plain listening socket on it, for the `with` block."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# -- the port ------------------------------------------------------------------------------------


def test_server_refuses_a_port_held_by_another_program(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with port_held_by_another_program() as port:
        result = natslab("server", "--port", str(port), "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"natslab: port {port} on 127.0.0.1 is in use by another program; pick another --port or leave it out for a free one"
    ]
    assert not data_dir.exists()
    assert running_with(str(tmp_path)) == {}


async def test_a_port_taken_after_the_check_is_still_told_from_the_servers_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port is taken between natslab's look and nats-server's bind: the server's own fatal line says so.
    monkeypatch.setattr(natsserver, "port_taken", lambda port: False)
    with port_held_by_another_program() as port:
        server = EmbeddedServer(tmp_path / "nats", tmp_path / "nats-server.log", port=port)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use by another program"):
            await server.start()
    assert not server.running and server.pid is None
    assert "address already in use" in (tmp_path / "nats-server.log").read_text()


async def test_a_restart_refuses_a_port_taken_meanwhile(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats", tmp_path / "nats-server.log")
    await server.start()
    port = server.port
    assert port is not None
    await server.stop()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse):
            await server.start()
    assert not server.running


async def test_a_server_that_dies_at_start_gives_its_own_words(tmp_path: Path) -> None:
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "jetstream").write_text("a file where the JetStream store goes")
    server = EmbeddedServer(tmp_path / "nats", tmp_path / "nats-server.log")
    with pytest.raises(ServerError, match=r"nats-server exited with code \d+ at start: .+; see "):
        await server.start()
    assert not server.running


def test_server_exits_non_zero_when_nats_server_dies_under_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*NATSLAB, "server", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().startswith("nats://127.0.0.1:")
        [ports_file] = (tmp_path / "nats" / "ports").glob("nats-server_*.ports")
        server_pid = int(ports_file.stem.rsplit("_", 1)[1])
        os.kill(server_pid, signal.SIGKILL)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1
    assert err.splitlines()[-1] == (
        f"natslab: nats-server (pid {server_pid}) ended by itself with code -9; see {tmp_path / 'logs' / 'nats-server.log'}"
    )
    assert not (tmp_path / "nats.url").exists()


# -- the sync mode -------------------------------------------------------------------------------


@pytest.mark.parametrize(("sync", "always"), [("always", True), ("interval", False)])
async def test_the_sync_mode_is_the_one_the_server_runs(tmp_path: Path, sync: str, always: bool) -> None:
    server = EmbeddedServer(tmp_path / "nats", tmp_path / "nats-server.log", sync=sync)
    await server.start()
    try:
        assert server.monitor_url is not None and server.monitor_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=10) as response:
            config = json.load(response)["jetstream"]["config"]
    finally:
        await server.stop()
    assert config.get("sync_always", False) is always
    assert config["sync_interval"] == 120 * 10**9  # nats-server's 2 minutes, also behind `always`
    assert "should be converted to a duration" not in (tmp_path / "nats-server.log").read_text()


# -- the environment -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("NATSLAB_ACK_WAIT", "abc", "natslab: NATSLAB_ACK_WAIT: 'abc' is not a number of seconds"),
        ("NATSLAB_NATS_TIMEOUT", "0", "natslab: NATSLAB_NATS_TIMEOUT: must be between 1 and 3600 seconds"),
        ("NATSLAB_SYNC", "sometimes", "natslab: NATSLAB_SYNC: 'sometimes' is not a sync mode; use always or interval"),
        (
            "NATSLAB_NATS_URL",
            "localhost:4222",
            "natslab: NATSLAB_NATS_URL: 'localhost:4222' is not a NATS URL like nats://127.0.0.1:4222 (or tls://...)",
        ),
    ],
)
@pytest.mark.parametrize("command", [[], ["server"], ["check"]])
def test_a_bad_variable_gives_one_line_and_exit_2(
    tmp_path: Path, name: str, value: str, line: str, command: list[str]
) -> None:
    result = natslab(*command, "--data-dir", str(tmp_path / "data"), env={name: value})
    assert (result.returncode, result.stderr.splitlines(), result.stdout) == (2, [line], "")
    assert not (tmp_path / "data").exists()


def test_help_is_printed_whatever_the_variables_say() -> None:
    result = natslab("--help", env={name: "?" for name in VARIABLES})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: natslab") and "--sync always|interval" in result.stdout
    assert result.stderr == ""


def test_a_scenario_says_the_ack_wait_and_sync_it_runs_with() -> None:
    result = natslab("--ack-wait", "1", "--sync", "interval", "scenario", "slides", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert {key: json.loads(result.stdout)[key] for key in ("ackWait_s", "sync")} == {"ackWait_s": 1.0, "sync": "interval"}


# -- the data dir --------------------------------------------------------------------------------

WRITERS = {
    "dashboard": [],
    "server": ["server"],
    "publish": ["publish", "deposit", "jim", "5", "--nats-url", "nats://127.0.0.1:1"],
    "listener": ["listener", "--name", "A", "--nats-url", "nats://127.0.0.1:1"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_data_dir_that_cannot_be_created_gives_one_line(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    data_dir = blocker / "sub"
    result = natslab(*WRITERS[command], "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"natslab: data dir {data_dir} is not writable: {blocker} is not a directory"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_the_data_dir_from_the_environment_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    result = natslab("server", env={"NATSLAB_DATA_DIR": str(tmp_path / "file")})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"natslab: data dir {tmp_path / 'file'} (from NATSLAB_DATA_DIR) is not writable: it is not a directory"
    ]


def test_check_only_reads_so_it_is_not_held_to_a_writable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    result = natslab("check", "--data-dir", str(tmp_path / "file" / "sub"))
    assert result.returncode == 2
    assert result.stderr.startswith("natslab: no NATS server:")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory under /tmp that an unprivileged user can reach (pytest's own are root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="natslab-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(folder)


def plain_environment(home: Path) -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in VARIABLES} | {"HOME": str(home)}


def unprivileged() -> list[str]:
    """A command prefix that drops root, whose write permission no chmod takes away; [] if not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be shown to root")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_read_only_data_dir_gives_one_line(public_dir: Path, command: str) -> None:
    prefix = unprivileged()
    data_dir = public_dir / "read-only"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    result = subprocess.run(
        [*prefix, *NATSLAB, *WRITERS[command], "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env=plain_environment(public_dir), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"natslab: data dir {data_dir} is not writable: permission denied"]
    assert list(data_dir.iterdir()) == []


async def test_check_reads_a_read_only_data_dir(public_dir: Path, make_lab, settings) -> None:
    prefix = unprivileged()
    settings.data_dir = public_dir / "data"
    lab = await make_lab(listeners=1, naive=1)
    await wait_listeners_ready(lab)
    await lab.publisher.record("deposit", "jim", 7000)
    await wait_drained(lab, timeout=30)
    await lab.stop()
    server = EmbeddedServer(settings.store_dir, public_dir / "nats-server.log")
    url = await server.start()
    try:
        settings.data_dir.chmod(0o555)
        result = subprocess.run(
            [*prefix, *NATSLAB, "check", "--data-dir", str(settings.data_dir), "--nats-url", url],
            capture_output=True, text=True, timeout=60, env=plain_environment(public_dir), stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        await server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
