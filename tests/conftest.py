"""Shared fixtures: a real nats-server per test on a free loopback port, and labs on temp dirs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dashboard.lab import Lab, connect_with_retry
from dashboard.natsserver import EmbeddedServer
from dashboard.settings import Settings

# Short enough that redelivery tests finish quickly, long enough for a loaded 2-core CI machine.
TEST_ACK_WAIT_S = 2.0


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "nats-store", tmp_path / "nats-server.log")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer):
    client = await connect_with_retry(nats_server.url, "natslab-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", ack_wait_s=TEST_ACK_WAIT_S)


LabFactory = Callable[..., Awaitable[Lab]]


@pytest.fixture
async def make_lab(settings: Settings) -> AsyncIterator[LabFactory]:
    """Start a lab (embedded server, publisher, listener processes); every lab is stopped afterwards."""
    labs: list[Lab] = []

    async def factory(listeners: int = 2, naive: int = 0, **overrides) -> Lab:
        for key, value in overrides.items():
            setattr(settings, key, value)
        lab = Lab(settings)
        labs.append(lab)
        await lab.start(listeners=listeners, naive=naive)
        return lab

    try:
        yield factory
    finally:
        for lab in labs:
            await lab.stop()
