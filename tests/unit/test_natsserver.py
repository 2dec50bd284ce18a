"""Finding the nats-server binary and refusing one that is too old."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dashboard.lab.natsserver import MIN_VERSION, EmbeddedServer, ServerError, check_version, find_nats_server


def fake_binary(tmp_path: Path, version_line: str) -> Path:
    path = tmp_path / "nats-server"
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_installed_binary_is_found_and_new_enough() -> None:
    assert check_version(find_nats_server()) >= MIN_VERSION


def test_an_old_server_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"nats-server 2\.10\.4; natslab needs 2\.11\.0 or newer"):
        check_version(fake_binary(tmp_path, "nats-server: v2.10.4"))


def test_an_unreadable_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="cannot read the version"):
        check_version(fake_binary(tmp_path, "hello"))


async def test_a_missing_binary_is_refused(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "store", tmp_path / "log", binary=tmp_path / "does-not-exist")
    with pytest.raises(ServerError, match="cannot run"):
        await server.start()


async def test_restart_keeps_port_and_store(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "store", tmp_path / "log")
    url = await server.start()
    try:
        assert url.startswith("nats://127.0.0.1:")
        first_pid = server.pid
        assert await server.restart() == url
        assert server.pid != first_pid and server.running
    finally:
        await server.stop()
    assert not server.running
