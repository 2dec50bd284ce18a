"""Credentials and URLs: several URLs in one string, secrets redacted wherever a URL is shown or
stored, flags written into the environment for child processes, and credentials that cannot work
refused by name before anything connects."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import nkeys
import pytest
import trustme
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from dashboard.commands.args import UsageError, apply_connection_options, nats_url
from dashboard.commands.main import build_parser, main
from publisher.credentials import (
    ENV,
    URL_VARIABLE,
    Credentials,
    CredentialsError,
    redact_url,
    short_url,
    split_urls,
    strip_userinfo,
    url_for_child,
    url_has_secret,
)
from publisher.jetstream import refusal


@pytest.mark.parametrize(
    ("url", "shown", "stored"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://alice:s3cret@h:4222", "nats://alice:***@h:4222", "nats://h:4222"),
        ("tls://t0ken@h:4443", "tls://***@h:4443", "tls://h:4443"),
        ("nats://alice:p@ss@h:4222", "nats://alice:***@h:4222", "nats://h:4222"),  # urlsplit takes the last @
        ("nats://a:x@h:1,nats://h:2,nats://b:y@g:3", "nats://a:***@h:1,nats://h:2,nats://b:***@g:3", "nats://h:1,nats://h:2,nats://g:3"),
        ("nats://h:4222/", "nats://h:4222/", "nats://h:4222/"),
    ],
)
def test_urls_are_shown_redacted_and_stored_without_credentials(url: str, shown: str, stored: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting again changes nothing
    assert strip_userinfo(url) == stored
    assert url_has_secret(url) == (url != stored)


def test_several_urls_are_one_string_split_where_they_are_used() -> None:
    assert split_urls("nats://a:1, nats://b:2 ,nats://c:3") == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert split_urls("nats://a:1") == ["nats://a:1"]
    assert short_url("nats://a:1,nats://u:pw@b:2,nats://c:3") == "nats://a:1 +2"
    assert short_url("nats://u:pw@b:2") == "nats://u:***@b:2"


def test_a_child_gets_a_url_with_a_secret_in_its_environment_not_on_its_command_line() -> None:
    assert url_for_child("nats://h:1,nats://g:2") == (["--nats-url", "nats://h:1,nats://g:2"], {})
    assert url_for_child("nats://u:pw@h:1") == ([], {URL_VARIABLE: "nats://u:pw@h:1"})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("nats://127.0.0.1:4222,nats://127.0.0.1:4223", "nats://127.0.0.1:4222,nats://127.0.0.1:4223"),
        ("nats://a:4222, tls://b:4443", "nats://a:4222,tls://b:4443"),
        ("nats://u:pw@a:4222,nats://u:pw@b:4222", "nats://u:pw@a:4222,nats://u:pw@b:4222"),
    ],
)
def test_the_url_option_takes_several_comma_joined_urls(text: str, parsed: str) -> None:
    assert nats_url(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nats://a:4222,http://b:80", "'http://b:80' is not a NATS URL"),
        ("nats://a:4222,", "has an empty URL between its commas"),
        ("nats://u:hunter2@a:4222,nats://u:hunter2@b:99999", "'nats://u:***@b:99999' is not a NATS URL"),
        ("nats://u:hunter2@a:4222,,nats://b:1", "'nats://u:***@a:4222,,nats://b:1' has an empty URL"),
    ],
)
def test_a_bad_url_among_several_is_named_without_its_secret(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        nats_url(text)
    assert reason in str(refused.value)
    assert "hunter2" not in str(refused.value)


# -- credentials -------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate and key, an NKEY seed, a .creds file and a file that is none of them."""
    ca = trustme.CA()
    client = ca.issue_cert("client@example.org")
    paths = {name: tmp_path / name for name in ("ca.pem", "client.crt", "client.key", "user.nk", "user.creds", "junk")}
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.crt"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    seed = nkeys.encode_seed(b"\1" * 32, nkeys.PREFIX_BYTE_USER).decode()
    paths["user.nk"].write_text(seed + "\n")
    paths["user.creds"].write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0.eyJ1.c2ln\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
    paths["junk"].write_text("not a key\n")
    return paths


def test_credentials_go_through_the_environment_and_back(files: dict[str, Path]) -> None:
    credentials = Credentials(user="alice", password="hunter2", tls_ca=files["ca.pem"], tls_cert=files["client.crt"], tls_key=files["client.key"])
    env = credentials.to_env()
    assert env == {
        "NATSLAB_NATS_USER": "alice", "NATSLAB_NATS_PASSWORD": "hunter2", "NATSLAB_TLS_CA": str(files["ca.pem"]),
        "NATSLAB_TLS_CERT": str(files["client.crt"]), "NATSLAB_TLS_KEY": str(files["client.key"]),
    }  # fmt: skip
    assert Credentials.from_env({**env, "NATSLAB_NATS_TOKEN": ""}) == credentials  # empty is unset
    assert Credentials.from_env({}) == Credentials()


def test_a_secret_never_shows_in_a_description_or_repr(files: dict[str, Path]) -> None:
    for credentials in (Credentials(user="alice", password="hunter2", tls_ca=files["ca.pem"]), Credentials(token="hunter2")):
        assert "hunter2" not in credentials.describe()
        assert "hunter2" not in repr(credentials)
    assert Credentials(user="alice", password="hunter2").describe() == "user alice with a password"
    assert Credentials(token="t").describe() == "a token"
    assert Credentials().describe() == "no credentials"
    assert Credentials(tls_ca=files["ca.pem"], tls_cert=files["client.crt"]).describe() == (
        f"TLS with CA {files['ca.pem']} and client certificate {files['client.crt']}"
    )


def test_nats_py_gets_each_kind_of_credentials(files: dict[str, Path]) -> None:
    assert Credentials().nats_options() == {}  # a URL's own credentials still count
    assert Credentials(user="alice", password="pw").nats_options() == {"user": "alice", "password": "pw"}
    assert Credentials(token="t").nats_options() == {"token": "t"}
    assert Credentials(nkey=files["user.nk"]).nats_options() == {"nkeys_seed": str(files["user.nk"])}
    assert Credentials(creds=files["user.creds"]).nats_options() == {"user_credentials": str(files["user.creds"])}
    tls = Credentials(tls_ca=files["ca.pem"], tls_cert=files["client.crt"], tls_key=files["client.key"]).nats_options()
    assert isinstance(tls["tls"], ssl.SSLContext) and tls["tls"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("given", "field", "reason"),
    [
        ({"user": "alice"}, "user", "needs a password too"),
        ({"password": "pw"}, "password", "needs a user too"),
        ({"tls_key": "client.key"}, "tls_key", "needs its certificate too"),
        ({"token": "t", "nkey": "user.nk"}, "nkey", "give one way to authenticate, not a token and an NKEY seed"),
        ({"nkey": "junk"}, "nkey", "not an NKEY seed"),
        ({"creds": "junk"}, "creds", "not a NATS .creds file (no user JWT block)"),
        ({"creds": "user.nk"}, "creds", "not a NATS .creds file"),
        ({"tls_ca": "junk"}, "tls_ca", "not a PEM CA certificate"),
        ({"tls_cert": "ca.pem"}, "tls_cert", "not a PEM client certificate and unencrypted key"),
        ({"tls_cert": "client.crt", "tls_key": "junk"}, "tls_cert", "not a PEM client certificate"),
        ({"tls_ca": "missing.pem"}, "tls_ca", "no such file or directory"),
    ],
)
def test_credentials_that_cannot_work_are_refused_by_name(
    files: dict[str, Path], tmp_path: Path, given: dict[str, str], field: str, reason: str
) -> None:
    values = {
        name: (tmp_path / value if name in ("nkey", "creds", "tls_ca", "tls_cert", "tls_key") else value)
        for name, value in given.items()
    }
    with pytest.raises(CredentialsError) as refused:
        Credentials(**values).check()
    assert refused.value.field == field
    assert reason in str(refused.value)


def test_credentials_that_can_work_pass_the_check(files: dict[str, Path]) -> None:
    Credentials(creds=files["user.creds"], tls_ca=files["ca.pem"], tls_cert=files["client.crt"], tls_key=files["client.key"]).check()
    Credentials(nkey=files["user.nk"]).check()
    Credentials(user="alice", password="pw").check()
    Credentials().check()


# -- flags into the environment ------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_flags_are_written_into_the_environment_over_its_variables(files: dict[str, Path]) -> None:
    environ = {"NATSLAB_NATS_USER": "bob", "NATSLAB_NATS_PASSWORD": "from-env", "NATSLAB_TLS_CA": str(files["ca.pem"])}
    args = parse("check", "--nats-user", "alice", "--nats-password", "pw", "--tls-cert", str(files["client.crt"]),
                 "--tls-key", str(files["client.key"]))  # fmt: skip
    credentials = apply_connection_options(args, environ)
    assert credentials == Credentials(
        user="alice", password="pw", tls_ca=files["ca.pem"], tls_cert=files["client.crt"], tls_key=files["client.key"]
    )
    assert environ[ENV["user"]] == "alice" and environ[ENV["password"]] == "pw"


def test_a_flag_before_the_command_counts_and_file_paths_become_absolute(files: dict[str, Path], monkeypatch) -> None:
    monkeypatch.chdir(files["user.nk"].parent)
    environ: dict[str, str] = {}
    apply_connection_options(parse("--nats-nkey", "user.nk", "check"), environ)
    assert environ == {ENV["nkey"]: str(files["user.nk"])}


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["check", "--nats-user", "alice"], {}, "--nats-user: needs a password too (--nats-password or NATSLAB_NATS_PASSWORD)"),
        (["check"], {"NATSLAB_NATS_PASSWORD": "pw"}, "NATSLAB_NATS_PASSWORD: needs a user too (--nats-user or NATSLAB_NATS_USER)"),
        (["check", "--nats-token", "t"], {"NATSLAB_NATS_USER": "a", "NATSLAB_NATS_PASSWORD": "pw"},
         "--nats-token: give one way to authenticate, not a user and password and a token"),
        (["check"], {"NATSLAB_NATS_NKEY": "{junk}"}, "NATSLAB_NATS_NKEY: {junk}: not an NKEY seed (a line starting with SU...)"),
    ],
)  # fmt: skip
def test_what_cannot_work_is_a_usage_error_naming_the_flag_or_variable_given(
    files: dict[str, Path], argv: list[str], environ: dict[str, str], message: str
) -> None:
    environ = {name: value.format(junk=files["junk"]) for name, value in environ.items()}
    with pytest.raises(UsageError) as refused:
        apply_connection_options(parse(*argv), environ)
    assert str(refused.value) == message.format(junk=files["junk"])


def test_a_missing_file_is_refused_while_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("check", "--nats-creds", str(tmp_path / "missing.creds"))
    assert exited.value.code == 2
    assert f"argument --nats-creds: {tmp_path}/missing.creds: no such file or directory" in capsys.readouterr().err


def test_help_groups_the_connection_options_and_shows_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV["password"], "hunter2")
    text = build_parser().format_help()
    assert "NATS connection:" in text
    for flag in ("--nats-url", "--nats-user", "--nats-password", "--nats-token", "--nats-nkey", "--nats-creds", "--tls-ca", "--tls-cert", "--tls-key"):
        assert flag in text
    assert "hunter2" not in text


# -- what a refusal says ------------------------------------------------------------------------------


def test_a_refusal_is_told_from_an_error_that_may_heal(files: dict[str, Path]) -> None:
    alice = Credentials(user="alice", password="hunter2")
    said = refusal(NatsError("nats: 'Authorization Violation'"), alice)
    assert said == "refused the credentials (Authorization Violation; natslab gave user alice with a password)"
    assert refusal(AuthorizationError(), Credentials()) is not None
    untrusted = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)")
    assert refusal(untrusted, Credentials()) == (
        "has a TLS certificate natslab does not trust (certificate verify failed: unable to get local issuer certificate);"
        " give its CA with --tls-ca"
    )
    required = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)")
    assert refusal(required, Credentials(tls_ca=files["ca.pem"])) == (
        "requires a client certificate (tlsv13 alert certificate required); give one with --tls-cert and --tls-key"
    )
    for may_heal in (ConnectionRefusedError(111, "Connect call failed"), BrokenPipeError(32, "Broken pipe"), NatsError("nats: stale connection")):
        assert refusal(may_heal, alice) is None


def test_every_command_refuses_a_bad_variable_even_one_that_runs_its_own_server(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its listeners would inherit the variable, and nats-py fail on the seed with a traceback.
    monkeypatch.setenv(ENV["nkey"], str(files["junk"]))
    assert main(["scenario", "--list"]) == 2
    assert capsys.readouterr().err == f"natslab: NATSLAB_NATS_NKEY: {files['junk']}: not an NKEY seed (a line starting with SU...)\n"
