"""How natslab proves who it is to a NATS server and secures the connection, and URLs without secrets.

Credentials travel in the environment (`NATSLAB_NATS_USER`...), never on a command line, where `ps`
shows them to every user: `natslab` writes the flags it was given there before anything runs, and
every process it starts (listeners, `natslab up` under `natslab web`, the failure helpers) inherits
them. `connect()` (publisher/jetstream.py) reads them with `Credentials.from_env()`.

A NATS URL may carry credentials of its own (`nats://user:password@host:4222`, `nats://token@host`),
which nats-py uses for that server when no others are given. Such a URL is shown and stored only
through `redact_url` (`nats://user:***@host:4222`), and handed to a child process in its
environment rather than on its command line (`url_for_child`).
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# The variable that gives a command its server's URL(s) when `--nats-url` is not given.
URL_VARIABLE = "NATSLAB_NATS_URL"

# field -> the variable that carries it.
ENV = {
    "user": "NATSLAB_NATS_USER",
    "password": "NATSLAB_NATS_PASSWORD",
    "token": "NATSLAB_NATS_TOKEN",
    "nkey": "NATSLAB_NATS_NKEY",
    "creds": "NATSLAB_NATS_CREDS",
    "tls_ca": "NATSLAB_TLS_CA",
    "tls_cert": "NATSLAB_TLS_CERT",
    "tls_key": "NATSLAB_TLS_KEY",
}
FILE_FIELDS = ("nkey", "creds", "tls_ca", "tls_cert", "tls_key")
KIND_WORDS = {"user": "a user and password", "token": "a token", "nkey": "an NKEY seed", "creds": "a .creds file"}

# scheme://userinfo@ in a URL: greedy up to the last @ before the path (or the next URL), as urlsplit reads it.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/,]*)@")


class CredentialsError(ValueError):
    """Credentials that cannot work as given: which one (`field`) and why, without its value; and the
    one that would complete it (`missing`), if that is what is wrong."""

    def __init__(self, field_name: str, reason: str, missing: str | None = None) -> None:
        super().__init__(reason)
        self.field = field_name
        self.missing = missing


def split_urls(text: str) -> list[str]:
    """The server URLs in a comma-joined list (`nats://a:4222,nats://b:4222`), blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def url_has_secret(url: str) -> bool:
    """Some URL in `url` carries a password or token (`nats://user:pass@...`, `nats://token@...`)."""
    return _USERINFO.search(url) is not None


def redact_url(url: str) -> str:
    """`url` fit to show or store: `nats://user:pass@h:4222` -> `nats://user:***@h:4222`, a token
    (`nats://token@h`) -> `nats://***@h`; every URL of a comma-joined list, and anything else as it is."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _USERINFO.sub(hide, url)


def short_url(url: str) -> str:
    """`url` for a line with little room: redacted, and the first server of several with how many
    more (`nats://127.0.0.1:4222 +2`)."""
    parts = split_urls(redact_url(url))
    if len(parts) <= 1:
        return parts[0] if parts else url
    return f"{parts[0]} +{len(parts) - 1}"


def strip_userinfo(url: str) -> str:
    """`url` without any credentials in it: where another process should look for the server, with
    credentials of its own (the lab's lock file)."""
    return _USERINFO.sub(lambda match: match["scheme"], url)


def url_for_child(url: str) -> tuple[list[str], dict[str, str]]:
    """How to give a child process `url`: `--nats-url URL` on its command line, or, when the URL
    carries a secret, `NATSLAB_NATS_URL` in its environment (only its owner can read that)."""
    if url_has_secret(url):
        return [], {URL_VARIABLE: url}
    return ["--nats-url", url], {}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who natslab is to NATS (at most one of: user and password, token, NKEY seed file, `.creds`
    file) and how it checks the server's TLS certificate and proves its own. Secrets never show in
    its repr or in `describe()`."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkey: Path | None = None
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """From the `NATSLAB_NATS_*`/`NATSLAB_TLS_*` variables; unset or empty is not given."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, variable in ENV.items():
            text = environ.get(variable, "")
            if text:
                values[name] = Path(text) if name in FILE_FIELDS else text
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that give a child process these credentials (the given ones only)."""
        return {ENV[f.name]: str(value) for f in fields(self) if (value := getattr(self, f.name)) is not None}

    @property
    def tls(self) -> bool:
        return any(value is not None for value in (self.tls_ca, self.tls_cert, self.tls_key))

    def auth_kinds(self) -> list[str]:
        """The ways to authenticate given (more than one cannot work together)."""
        kinds = []
        if self.user is not None or self.password is not None:
            kinds.append("user")
        for name in ("token", "nkey", "creds"):
            if getattr(self, name) is not None:
                kinds.append(name)
        return kinds

    def check(self) -> None:
        """Raise CredentialsError unless these credentials can work: one way to authenticate, each
        file readable and what it claims to be (a seed, a creds file, PEM certificates)."""
        kinds = self.auth_kinds()
        if len(kinds) > 1:
            both = " and ".join(KIND_WORDS[kind] for kind in kinds)
            raise CredentialsError(kinds[1], f"give one way to authenticate, not {both}")
        if self.user is not None and self.password is None:
            raise CredentialsError("user", "needs a password too", missing="password")
        if self.password is not None and self.user is None:
            raise CredentialsError("password", "needs a user too", missing="user")
        if self.tls_key is not None and self.tls_cert is None:
            raise CredentialsError("tls_key", "needs its certificate too", missing="tls_cert")
        for name in FILE_FIELDS:
            path = getattr(self, name)
            if path is not None:
                reason = unreadable_reason(path)
                if reason:
                    raise CredentialsError(name, f"{path}: {reason}")
        if self.nkey is not None:
            _check_seed("nkey", self.nkey, _read_text(self.nkey).strip())
        if self.creds is not None:
            _check_creds(self.creds)
        self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for `nats.connect`: trusting `tls_ca` (else the system's CAs), presenting
        `tls_cert`/`tls_key`; None when no TLS option is given (nats-py then uses the system's CAs
        for a server that requires TLS)."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        except (ssl.SSLError, OSError) as exc:
            raise CredentialsError("tls_ca", f"{self.tls_ca}: not a PEM CA certificate ({ssl_reason(exc)})") from None
        if self.tls_cert is not None:
            key = str(self.tls_key) if self.tls_key else None
            try:
                # An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
                context.load_cert_chain(str(self.tls_cert), key, password=lambda: b"")
            except (ssl.SSLError, OSError) as exc:
                files = f"{self.tls_cert}" + (f" and {self.tls_key}" if self.tls_key else "")
                raise CredentialsError(
                    "tls_cert", f"{files}: not a PEM client certificate and unencrypted key ({ssl_reason(exc)})"
                ) from None
        return context

    def nats_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`: only what is given, so a URL's own credentials still
        count when none are."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password
        if self.token is not None:
            options["token"] = self.token
        if self.nkey is not None:
            options["nkeys_seed"] = str(self.nkey)
        if self.creds is not None:
            options["user_credentials"] = str(self.creds)
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        return options

    def describe(self) -> str:
        """What is used, in words, never a secret: `user alice with a password, TLS with CA ca.pem`."""
        parts = []
        if self.user is not None:
            parts.append(f"user {self.user} with a password")
        if self.token is not None:
            parts.append("a token")
        if self.nkey is not None:
            parts.append(f"NKEY seed {self.nkey}")
        if self.creds is not None:
            parts.append(f"credentials file {self.creds}")
        if self.tls:
            tls = [f"CA {self.tls_ca}" if self.tls_ca else "the system's CAs"]
            if self.tls_cert is not None:
                tls.append(f"client certificate {self.tls_cert}")
            parts.append("TLS with " + " and ".join(tls))
        return ", ".join(parts) if parts else "no credentials"


def unreadable_reason(path: Path) -> str | None:
    """Why `path` cannot be read as a file, or None when it can."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("ascii", "replace")


def _check_seed(name: str, path: Path, seed: str) -> None:
    import nkeys

    try:
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:  # nkeys raises its own errors, and others for garbage
        raise CredentialsError(name, f"{path}: not an NKEY seed (a line starting with SU...)") from None


def _check_creds(path: Path) -> None:
    """A `.creds` file as nats-py reads it: a user JWT block, then a seed block. (nats-py loops for
    ever on a file without the JWT block, so this is checked before it ever sees one.)"""
    lines = [line.strip() for line in _read_text(path).splitlines()]

    def after(marker: str) -> str | None:
        for index, line in enumerate(lines[:-1]):
            if marker in line:
                return lines[index + 1]
        return None

    jwt = after("BEGIN NATS USER JWT")
    if not jwt or jwt.count(".") != 2:
        raise CredentialsError("creds", f"{path}: not a NATS .creds file (no user JWT block)")
    seed = after("BEGIN USER NKEY SEED")
    if not seed:
        raise CredentialsError("creds", f"{path}: not a NATS .creds file (no user NKEY seed block)")
    _check_seed("creds", path, seed)


def ssl_reason(exc: BaseException) -> str:
    """An SSL error in words: `certificate verify failed: unable to get local issuer certificate`,
    without OpenSSL's `[SSL: ...]` tag and the `(_ssl.c:1006)` after it."""
    text = getattr(exc, "verify_message", None) and f"certificate verify failed: {exc.verify_message}"  # type: ignore[attr-defined]
    text = text or (exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc))
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__
