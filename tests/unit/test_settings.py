"""From the command line and the environment to `Settings`: every flag counts where it is given, every
`NATSLAB_*` variable is checked like its flag, and an option a command would drop is refused."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from dashboard.commands import loops
from dashboard.commands.args import UsageError, nats_url, settings_from
from dashboard.commands.main import build_parser, misplaced
from dashboard.lab.natsserver import DEFAULT_SYNC
from dashboard.lab.settings import unwritable_reason
from listeners.groups import DEFAULT_ACK_WAIT_S

VARIABLES = (
    "NATSLAB_ACK_WAIT", "NATSLAB_NATS_TIMEOUT", "NATSLAB_SYNC", "NATSLAB_NATS_URL", "NATSLAB_DATA_DIR", "NATSLAB_LOOP",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def parsed(*argv: str) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = misplaced(parser, args)
    if problem is not None:
        raise UsageError(problem)
    return args


@pytest.mark.parametrize(
    "argv",
    [
        ["--ack-wait", "3", "--sync", "interval", "scenario", "slides"],
        ["scenario", "slides", "--ack-wait", "3", "--sync", "interval"],
        ["--ack-wait", "9", "--sync", "always", "scenario", "slides", "--ack-wait", "3", "--sync", "interval"],
    ],
)
def test_a_scenario_takes_ack_wait_and_sync_before_or_after_its_name(argv: list[str]) -> None:
    settings = settings_from(parsed(*argv))
    assert (settings.ack_wait_s, settings.sync) == (3.0, "interval")


@pytest.mark.parametrize("command", [["server"], ["chaos"], ["bench"], []])
def test_every_command_that_starts_a_server_takes_sync(command: list[str]) -> None:
    assert settings_from(parsed("--sync", "interval", *command)).sync == "interval"
    assert settings_from(parsed(*command)).sync == DEFAULT_SYNC


def test_variables_fill_in_for_flags_that_are_not_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NATSLAB_ACK_WAIT", "7")
    monkeypatch.setenv("NATSLAB_NATS_TIMEOUT", "12")
    monkeypatch.setenv("NATSLAB_SYNC", "interval")
    monkeypatch.setenv("NATSLAB_NATS_URL", "nats://127.0.0.1:4333")
    monkeypatch.setenv("NATSLAB_DATA_DIR", str(tmp_path))
    settings = settings_from(parsed("listener", "--name", "A"))
    assert (settings.ack_wait_s, settings.nats_timeout_s, settings.sync) == (7.0, 12.0, "interval")
    assert settings.data_dir == tmp_path
    assert settings.discovered_nats_url() == "nats://127.0.0.1:4333"
    assert settings_from(parsed("listener", "--name", "A", "--ack-wait", "2")).ack_wait_s == 2.0


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_the_headless_processes_run_on_the_loop_natslab_loop_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("NATSLAB_LOOP", name)
    settings = settings_from(parsed("listener", "--name", "A"))
    assert settings.loop == name

    async def running() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(running(), settings.loop).split(".")[0] == name


def test_uvloop_is_the_default_where_it_is_installed() -> None:
    assert settings_from(parsed()).loop == "uvloop"


def test_empty_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.setenv(name, "")
    settings = settings_from(parsed())
    assert (settings.ack_wait_s, settings.sync, settings.env_nats_url) == (DEFAULT_ACK_WAIT_S, DEFAULT_SYNC, None)
    assert settings.data_dir.name == "natslab"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("NATSLAB_ACK_WAIT", "abc", "'abc' is not a number of seconds"),
        ("NATSLAB_ACK_WAIT", "0.1", "must be between 0.5 and 3600 seconds"),
        ("NATSLAB_NATS_TIMEOUT", "soon", "'soon' is not a number of seconds"),
        ("NATSLAB_SYNC", "sometimes", "'sometimes' is not a sync mode; use always or interval"),
        ("NATSLAB_LOOP", "trio", "'trio' is not one of uvloop, asyncio"),
        ("NATSLAB_NATS_URL", "localhost:4222", "is not a NATS URL like nats://127.0.0.1:4222"),
        ("NATSLAB_NATS_URL", "http://127.0.0.1:4222", "is not a NATS URL"),
        ("NATSLAB_NATS_URL", "nats://127.0.0.1:99999", "is not a NATS URL"),
    ],
)
def test_a_bad_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as refused:
        settings_from(parsed("check"))
    assert str(refused.value).startswith(f"{name}: ")
    assert reason in str(refused.value)


def test_a_flag_overrides_a_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATSLAB_ACK_WAIT", "abc")
    monkeypatch.setenv("NATSLAB_SYNC", "sometimes")
    settings = settings_from(parsed("--ack-wait", "3", "--sync", "always"))
    assert (settings.ack_wait_s, settings.sync) == (3.0, "always")


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222", "tls://nats.example.com:4443", "nats://user:pw@host", "nats://h:1/"])
def test_nats_urls_that_nats_py_takes_are_accepted(url: str) -> None:
    assert nats_url(url) == url


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--listeners", "3", "bench"], "`natslab bench` does not take --listeners before its name; give it after"),
        (["--defer", "ack-wait", "listener", "--name", "A"], "`natslab listener` does not take --defer before its name"),
        (["--nats-url", "nats://127.0.0.1:4222", "server"], "`natslab server` does not take --nats-url"),
        (["--ack-wait", "3", "check"], "`natslab check` does not take --ack-wait"),
        (["--sync", "interval", "publish", "deposit", "jim", "5"], "`natslab publish` does not take --sync"),
        (["--data-dir", "/tmp", "scenario", "slides"], "`natslab scenario` does not take --data-dir"),
    ],
)
def test_an_option_the_command_would_drop_is_refused(argv: list[str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem.replace("`", ".")):
        parsed(*argv)


def test_options_before_the_name_that_the_command_takes_still_count(tmp_path: Path) -> None:
    settings = settings_from(parsed("--data-dir", str(tmp_path), "--nats-timeout", "4", "check"))
    assert (settings.data_dir, settings.nats_timeout_s) == (tmp_path, 4.0)
    dashboard = settings_from(parsed("--listeners", "3", "--naive", "0", "--defer", "ack-wait"))
    assert (dashboard.listeners, dashboard.naive, dashboard.defer) == (3, 0, "ack-wait")


def test_a_data_dir_under_a_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert unwritable_reason(blocker / "sub" / "deeper") == f"{blocker} is not a directory"
    assert unwritable_reason(blocker) == "it is not a directory"
    assert unwritable_reason(tmp_path / "new" / "dir") is None
    assert unwritable_reason(tmp_path) is None
    assert not (tmp_path / "new").exists()
