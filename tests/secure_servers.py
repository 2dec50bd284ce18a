"""NATS servers that want to know who is connecting, made for one test: TLS that checks client
certificates, users with a password or an NKEY, a token, and operator mode (JWTs) for `.creds` files.

Each runs the same nats-server binary as the lab (`find_nats_server`), from a config file written
here, on a free loopback port, with JetStream, and ends with `stop()` (the `running` context manager
stops it whatever happens). Certificates come from trustme; keys and JWTs are made with nkeys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nkeys
import trustme

from dashboard.lab.natsserver import die_with_parent, find_nats_server, read_ports

START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Pki:
    """A CA, a certificate for 127.0.0.1 signed by it, and a client certificate signed by it; and a
    second CA that signed nothing of these (to trust the wrong one)."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("natslab-client@example.org")
        pki = cls(
            ca=folder / "ca.pem",
            other_ca=folder / "other-ca.pem",
            server_cert=folder / "server.crt",
            server_key=folder / "server.key",
            client_cert=folder / "client.crt",
            client_key=folder / "client.key",
        )
        ca.cert_pem.write_to_path(str(pki.ca))
        trustme.CA().cert_pem.write_to_path(str(pki.other_ca))
        server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
        server.private_key_pem.write_to_path(str(pki.server_key))
        client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
        client.private_key_pem.write_to_path(str(pki.client_key))
        return pki

    def tls_block(self) -> str:
        """Server TLS that also requires a client certificate signed by the CA (`verify: true`)."""
        return (
            f'tls {{\n  cert_file: "{self.server_cert}"\n  key_file: "{self.server_key}"\n'
            f'  ca_file: "{self.ca}"\n  verify: true\n  timeout: 2\n}}\n'
        )


def end_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout`; reaped either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def secret(prefix: str) -> str:
    """A fresh secret, easy to look for in output: `pw-3f9a...`."""
    return f"{prefix}-{secrets.token_hex(8)}"


def new_keypair(prefix: int) -> tuple[nkeys.KeyPair, str]:
    """A new NKEY pair (operator, account or user, by `prefix`) and its seed."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return nkeys.from_seed(bytearray(seed)), seed.decode()


def public(pair: nkeys.KeyPair) -> str:
    return pair.public_key.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(issuer: nkeys.KeyPair, subject: str, name: str, claims: dict) -> str:
    """A NATS JWT (nats-io/jwt v2): header, claims with a jti (a hash of them), ed25519 signature by
    the issuer's nkey."""
    body = {"iat": int(time.time()), "iss": public(issuer), "name": name, "sub": subject, "nats": claims}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    return f"{head}.{payload}.{_b64(issuer.sign(f'{head}.{payload}'.encode()))}"


@dataclass(frozen=True)
class Operator:
    """Operator mode: the server config that trusts the operator, and a user's `.creds` file."""

    config: str
    creds: Path
    user_seed: str


def operator_mode(folder: Path) -> Operator:
    """An operator, a system account, an account with JetStream and a user in it, as `nsc` would
    make them; the server resolves the accounts from memory."""
    unlimited = -1
    operator, _ = new_keypair(nkeys.PREFIX_BYTE_OPERATOR)
    system, _ = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    account, _ = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user, user_seed = new_keypair(nkeys.PREFIX_BYTE_USER)
    operator_jwt = make_jwt(operator, public(operator), "natslab-test", {"type": "operator", "version": 2})
    system_jwt = make_jwt(operator, public(system), "SYS", {"type": "account", "version": 2})
    limits = {
        name: unlimited
        for name in ("subs", "data", "payload", "imports", "exports", "conn", "leaf", "mem_storage", "disk_storage", "streams", "consumer")
    }
    account_jwt = make_jwt(
        operator, public(account), "LAB", {"type": "account", "version": 2, "limits": {**limits, "wildcards": True}}
    )
    user_claims = {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": unlimited, "data": unlimited, "payload": unlimited}
    user_jwt = make_jwt(account, public(user), "lab-user", user_claims)
    creds = folder / "lab-user.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n"
    )
    config = (
        f"operator: {operator_jwt}\nsystem_account: {public(system)}\nresolver: MEMORY\n"
        f"resolver_preload: {{\n  {public(account)}: {account_jwt}\n  {public(system)}: {system_jwt}\n}}\n"
    )
    return Operator(config, creds, user_seed)


class SecureServer:
    """nats-server with JetStream from `config` (authorization, TLS...) on a free loopback port."""

    def __init__(self, folder: Path, config: str) -> None:
        self.folder = folder
        self.config = config
        self.port: int | None = None
        self.log_file = folder / "nats-server.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "the server has not started"
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> SecureServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        ports_dir = self.folder / "ports"
        ports_dir.mkdir(exist_ok=True)
        config_file = self.folder / "nats-server.conf"
        config_file.write_text(
            f'listen: "127.0.0.1:-1"\njetstream {{\n  store_dir: "{self.folder / "store"}"\n}}\n{self.config}'
        )
        binary = find_nats_server()
        self._process = subprocess.Popen(
            [str(binary), "-c", str(config_file), "--ports_file_dir", str(ports_dir), "-l", str(self.log_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip
        ports_file = ports_dir / f"{binary.name}_{self._process.pid}.ports"
        deadline = time.monotonic() + START_TIMEOUT_S
        while (ports := read_ports(ports_file)) is None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"nats-server did not start from {config_file}:\n{log}")
            time.sleep(0.02)
        self.port = int(ports["nats"][0].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            end_process(process, timeout=10)


@contextmanager
def running(folder: Path, config: str) -> Iterator[SecureServer]:
    server = SecureServer(folder, config).start()
    try:
        yield server
    finally:
        server.stop()
