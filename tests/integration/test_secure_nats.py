"""natslab against NATS servers that want to know who connects: users with passwords, an NKEY user,
a token, operator mode with a `.creds` file, TLS with client certificates, several URLs. Real
nats-server processes (tests/secure_servers.py), real `natslab` processes.

What counts besides working: a refusal (a wrong password, an untrusted certificate, no client
certificate) is one line and exit 1 at once, never a retry loop; and no secret shows anywhere a
person or another user could see it: output, logs, the lock file, command lines, the host's state.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import nkeys
import pytest
from secure_servers import Pki, SecureServer, end_process, new_keypair, operator_mode, public, running, secret

from dashboard.lab.client import ping
from dashboard.lab.host import LOCK_FILE, open_lab
from dashboard.lab.probes import wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.waits import close_quietly, connect_with_retry, nats_reachable, wait_until
from listeners.groups import GUARDED_GROUP
from publisher.credentials import ENV, URL_VARIABLE, Credentials
from publisher.events import STREAM_NAME

NATSLAB = [sys.executable, "-m", "dashboard.commands"]
# What a test's natslab processes must not pick up from the environment the suite runs in.
VARIABLES = (URL_VARIABLE, "NATSLAB_DATA_DIR", "NATSLAB_NATS_TIMEOUT", *ENV.values())
# A refusal is said at once: Python's start and one connect attempt, far from any retry loop's 5 s.
REFUSED_WITHIN_S = 4.0


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in VARIABLES}, **(extra or {})}


def natslab(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NATSLAB, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=environment(env),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def tls_flags(pki: Pki) -> list[str]:
    return ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]


def tls_env(pki: Pki) -> dict[str, str]:
    return {ENV["tls_ca"]: str(pki.ca), ENV["tls_cert"]: str(pki.client_cert), ENV["tls_key"]: str(pki.client_key)}


def no_secret_in(texts: dict[str, str], hidden: list[str]) -> None:
    for where, text in texts.items():
        for value in hidden:
            assert value not in text, f"a secret shows in {where}"


def files_under(folder: Path) -> dict[str, str]:
    """Every file natslab wrote in a data dir (databases and logs alike), as text."""
    return {str(path): path.read_bytes().decode(errors="replace") for path in folder.rglob("*") if path.is_file()}


@dataclass
class Deployment:
    """How to reach one secured server: the flags and variables that let natslab in, the secrets
    that must not show, and the credentials for the test's own connection."""

    url: str
    args: list[str]
    env: dict[str, str]
    hidden: list[str]
    credentials: Credentials
    pki: Pki | None = None
    server: SecureServer | None = field(default=None, repr=False)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


@contextmanager
def users_server(tmp_path: Path, pki: Pki) -> Iterator[tuple[SecureServer, str, Path, str]]:
    """TLS with client certificates; alice with a password, and an NKEY user. Yields the server, the
    password, the NKEY seed file and the seed."""
    password = secret("pw")
    user, seed = new_keypair(nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(seed + "\n")
    config = (
        pki.tls_block()
        + f'authorization {{\n  users = [\n    {{user: alice, password: "{password}"}}\n'
        f"    {{nkey: {public(user)}}}\n  ]\n}}\n"
    )
    with running(tmp_path / "users-server", config) as server:
        yield server, password, seed_file, seed


@contextmanager
def deployment(kind: str, tmp_path: Path, pki: Pki) -> Iterator[Deployment]:
    """A server for one way to authenticate, and what gets natslab in."""
    if kind == "token":
        token = secret("tok")
        with running(tmp_path / "token-server", f'authorization {{\n  token: "{token}"\n}}\n') as server:
            yield Deployment(server.url, ["--nats-url", server.url], {ENV["token"]: token}, [token], Credentials(token=token))
        return
    if kind == "creds":
        operator = operator_mode(tmp_path)
        with running(tmp_path / "operator-server", operator.config) as server:
            yield Deployment(
                server.url, ["--nats-url", server.url, "--nats-creds", str(operator.creds)], {}, [operator.user_seed],
                Credentials(creds=operator.creds),
            )  # fmt: skip
        return
    with users_server(tmp_path, pki) as (server, password, seed_file, seed):
        tls = Credentials(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
        if kind == "password":
            args = ["--nats-url", server.url, "--nats-user", "alice", "--nats-password", password, *tls_flags(pki)]
            yield Deployment(server.url, args, {}, [password], replace(tls, user="alice", password=password), pki, server)
        elif kind == "password-in-url":  # in the variable: on a command line, ps would show it
            env = {URL_VARIABLE: f"nats://alice:{password}@127.0.0.1:{server.port}", **tls_env(pki)}
            yield Deployment(server.url, [], env, [password], replace(tls, user="alice", password=password), pki, server)
        elif kind == "nkey":
            env = {ENV["nkey"]: str(seed_file), **tls_env(pki)}
            yield Deployment(server.url, ["--nats-url", server.url], env, [seed], replace(tls, nkey=seed_file), pki, server)
        else:
            raise AssertionError(kind)


@contextmanager
def listener(data: Path, target: Deployment, output: Path) -> Iterator[subprocess.Popen]:
    """`natslab listener A` with the deployment's flags and variables, its stdout and stderr in
    `output`; stopped (SIGTERM, then SIGKILL at a deadline) whatever happens."""
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [*NATSLAB, "listener", "--name", "A", "--data-dir", str(data), "--ack-wait", "2", *target.args],
            env=environment(target.env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        end_process(process, timeout=15)


async def wait_for_consumer(target: Deployment, timeout: float = 20.0) -> None:
    """The guarded group's consumer exists: a listener connected and bound (the test's own connection
    uses the same credentials, given as an argument rather than through the environment)."""
    nc = await connect_with_retry(target.url, "natslab-test", timeout=5.0, credentials=target.credentials)

    async def bound() -> bool:
        try:
            await nc.jetstream().consumer_info(STREAM_NAME, GUARDED_GROUP.name)
        except Exception:
            return False
        return True

    try:
        await wait_until(bound, timeout, "the listener's consumer")
    finally:
        await close_quietly(nc)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


# -- every way in, end to end ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["password", "password-in-url", "nkey", "token", "creds"])
async def test_publish_listen_and_check_with_each_kind_of_credentials(kind: str, tmp_path: Path, pki: Pki) -> None:
    data = tmp_path / "data"
    output = tmp_path / "listener.out"
    with deployment(kind, tmp_path, pki) as target, listener(data, target, output) as process:
        await wait_for_consumer(target)
        published = natslab("publish", "deposit", "jim", "70", "--data-dir", data, *target.args, env=target.env)
        assert published.returncode == 0, published.stderr
        assert published.stdout.startswith("jim #1 deposit $70 ") and "stream seq 1" in published.stdout
        checked = natslab("check", "--wait", "20", "--data-dir", data, *target.args, env=target.env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.rstrip().endswith("| OK")
        assert process.poll() is None, "the listener ended"
        listener_command = cmdline(process.pid)
    assert process.returncode == 0  # stopped by SIGTERM, nothing to say
    outputs = {
        "publish": published.stdout + published.stderr,
        "check": checked.stdout + checked.stderr,
        "the listener's output": output.read_text(),
        **files_under(data),
    }
    no_secret_in(outputs, target.hidden)
    if kind in ("nkey", "token", "password-in-url"):  # given by the environment only
        no_secret_in({"the listener's command line": listener_command}, target.hidden)


# -- labs: listeners the supervisor starts, the lock, the host's state -------------------------------


async def test_a_lab_on_a_url_with_a_password_gives_its_listeners_everything_and_shows_no_secret(
    tmp_path: Path, pki: Pki, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tls_env(pki).items():  # as `natslab --tls-ca ...` leaves them for its children
        monkeypatch.setenv(name, value)
    with users_server(tmp_path, pki) as (server, password, _, _):
        url = f"nats://alice:{password}@127.0.0.1:{server.port}"
        _, hosted = await open_lab(replace(settings, nats_url=url, listeners=2, naive=1), "the test")
        assert hosted is not None
        try:
            await wait_listeners_ready(hosted.lab)  # each connected: TLS from the environment it inherited
            commands = {f"listener {entry.name}'s command line": cmdline(entry.pid) for entry in hosted.lab.supervisor.listeners.values()}  # type: ignore[union-attr]
            assert len(commands) == 3  # A, B, N1
            lock = (settings.data_dir / LOCK_FILE).read_text()
            assert f'"url": "{server.url}"' in lock  # where the server is, without whose credentials
            state = await ping(url)
            assert state is not None and state.host.url == f"nats://alice:***@127.0.0.1:{server.port}"
        finally:
            await hosted.stop("the test ended")
        no_secret_in({**commands, "the lock file": lock, **files_under(settings.data_dir)}, [password])


async def test_up_prints_the_url_redacted_and_down_stops_it_with_its_own_credentials(tmp_path: Path, pki: Pki) -> None:
    data = tmp_path / "data"
    with users_server(tmp_path, pki) as (server, password, _, _):
        up = subprocess.Popen(
            [*NATSLAB, "up", "--data-dir", str(data), "--listeners", "1", "--naive", "0",
             "--nats-url", f"nats://alice:{password}@127.0.0.1:{server.port}", *tls_flags(pki)],
            env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert up.stdout is not None
            first = (await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), 60)).strip()
            assert first == f"nats://alice:***@127.0.0.1:{server.port}"
            # The lock names the server without credentials: `down` brings its own, from the environment.
            down = natslab(
                "down", "--data-dir", data, env={ENV["user"]: "alice", ENV["password"]: password, **tls_env(pki)}
            )
            assert down.returncode == 0, down.stderr
            assert f"stopped the lab of {data} (natslab up, pid {up.pid})" in down.stderr
            stdout, stderr = await asyncio.wait_for(asyncio.to_thread(up.communicate), 30)
            assert up.returncode == 0, stderr
        finally:
            if up.poll() is None:
                up.kill()
                up.communicate()
    no_secret_in({"up": first + stdout + stderr, "down": down.stdout + down.stderr, **files_under(data)}, [password])


# -- several URLs ------------------------------------------------------------------------------------


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_several_urls_connect_when_the_first_is_dead(tmp_path: Path, pki: Pki) -> None:
    with deployment("token", tmp_path, pki) as target:
        dead = f"nats://127.0.0.1:{dead_port()}"
        assert await nats_reachable(f"{dead},{target.url}")
        assert not await nats_reachable(f"{dead},nats://127.0.0.1:{dead_port()}")
        started = time.monotonic()
        published = natslab(
            "publish", "deposit", "jim", "5", "--data-dir", tmp_path / "data", "--nats-url", f"{dead},{target.url}",
            env=target.env,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert "stream seq 1" in published.stdout
        assert time.monotonic() - started < 10


# -- refusals: one line, exit 1, at once ------------------------------------------------------------


def refused(result: subprocess.CompletedProcess, took: float, says: str, prefix: str = "natslab: ") -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    assert says in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert took < REFUSED_WITHIN_S, f"took {took:.1f} s"
    return lines[0]


def timed(*args: str | Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = natslab(*args, env=env)
    return result, time.monotonic() - started


@pytest.mark.parametrize("command", [["check"], ["publish", "deposit", "jim", "5"], ["listener", "--name", "A"]])
def test_a_wrong_password_is_one_line_and_exit_1_at_once(command: list[str], tmp_path: Path, pki: Pki) -> None:
    data = tmp_path / "data"
    wrong = secret("wrong")
    with users_server(tmp_path, pki) as (server, password, _, _):
        result, took = timed(
            *command, "--data-dir", data, "--nats-url", server.url, *tls_flags(pki),
            env={ENV["user"]: "alice", ENV["password"]: wrong},
        )  # fmt: skip
    prefix = "natslab listener A: " if command[0] == "listener" else "natslab: "
    line = refused(result, took, f"NATS at {server.url} refused the credentials (Authorization Violation", prefix)
    assert "user alice with a password" in line
    no_secret_in({"the output": result.stdout + result.stderr, **files_under(data)}, [wrong, password])
    assert not (data / "transactions.db").exists()  # a publish refused records nothing


def test_credentials_in_the_url_that_are_wrong_are_refused_without_showing_them(tmp_path: Path, pki: Pki) -> None:
    wrong = secret("wrong")
    with users_server(tmp_path, pki) as (server, _, _, _):
        result, took = timed(
            "check", "--data-dir", tmp_path / "data", "--nats-url", f"nats://alice:{wrong}@127.0.0.1:{server.port}",
            *tls_flags(pki),
        )  # fmt: skip
    refused(result, took, f"NATS at nats://alice:***@127.0.0.1:{server.port} refused the credentials")
    assert wrong not in result.stderr


@pytest.mark.parametrize(
    ("tls", "says"),
    [
        ([], "has a TLS certificate natslab does not trust (certificate verify failed"),  # TLS required, none set up
        (["--tls-cert", "client_cert", "--tls-key", "client_key"], "give its CA with --tls-ca"),  # no CA given
        (["--tls-ca", "other_ca", "--tls-cert", "client_cert", "--tls-key", "client_key"], "does not trust"),
        (["--tls-ca", "ca"], "requires a client certificate"),
    ],
)
def test_tls_that_cannot_work_is_one_line_and_exit_1_at_once(tls: list[str], says: str, tmp_path: Path, pki: Pki) -> None:
    flags = [arg if arg.startswith("--") else str(getattr(pki, arg)) for arg in tls]
    with users_server(tmp_path, pki) as (server, password, _, _):
        result, took = timed(
            "check", "--data-dir", tmp_path / "data", "--nats-url", server.url, "--nats-user", "alice",
            "--nats-password", password, *flags,
        )  # fmt: skip
    refused(result, took, says)
    assert password not in result.stderr


# -- refused before anything runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--tls-ca", "{tmp}/missing.pem"], {}, "argument --tls-ca: {tmp}/missing.pem: no such file or directory"),
        (["--nats-nkey", "{tmp}"], {}, "argument --nats-nkey: {tmp}: is a directory, not a file"),
        ([], {"NATSLAB_NATS_CREDS": "{tmp}/missing.creds"}, "NATSLAB_NATS_CREDS: {tmp}/missing.creds: no such file"),
        (["--nats-creds", "{tmp}/not.creds"], {}, "--nats-creds: {tmp}/not.creds: not a NATS .creds file"),
        (["--nats-nkey", "{tmp}/not.creds"], {}, "--nats-nkey: {tmp}/not.creds: not an NKEY seed"),
        (["--tls-ca", "{tmp}/not.creds"], {}, "--tls-ca: {tmp}/not.creds: not a PEM CA certificate"),
        (["--nats-user", "alice"], {}, "--nats-user: needs a password too (--nats-password or NATSLAB_NATS_PASSWORD)"),
        (["--nats-token", "t0ken"], {"NATSLAB_NATS_USER": "bob", "NATSLAB_NATS_PASSWORD": "pw"}, "one way to authenticate"),
        (["--nats-url", "nats://alice:hunter2@127.0.0.1:99999"], {}, "'nats://alice:***@127.0.0.1:99999' is not a NATS URL"),
        (["--nats-url", "nats://127.0.0.1:4222,,nats://127.0.0.1:4223"], {}, "has an empty URL between its commas"),
    ],
)
def test_options_that_cannot_work_are_a_usage_error_before_anything_runs(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    (tmp_path / "not.creds").write_text("hunter2 is not a creds file\n")
    fill = {"tmp": str(tmp_path)}
    result = natslab(
        "check", "--data-dir", tmp_path / "data", "--nats-url", "nats://127.0.0.1:1",
        *(arg.format(**fill) for arg in args), env={name: value.format(**fill) for name, value in env.items()},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says.format(**fill) in lines[0], result.stderr
    assert "hunter2" not in result.stderr and "t0ken" not in result.stderr


def test_help_shows_no_secret_whatever_the_variables_hold() -> None:
    env = {ENV["password"]: "hunter2", ENV["token"]: "t0ken", URL_VARIABLE: "nats://alice:hunter2@h:4222"}
    for command in ([], ["check"], ["up"]):
        result = natslab(*command, "--help", env=env)
        assert result.returncode == 0
        assert "--nats-password" in result.stdout and "NATSLAB_TLS_CA" in result.stdout
        assert "hunter2" not in result.stdout and "t0ken" not in result.stdout
