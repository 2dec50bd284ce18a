"""The dashboard on a NATS server that refuses its credentials: it says so once, in words, without
the secret, and does not try again (a wrong password does not heal). `q` still leaves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import wait_for
from secure_servers import running, secret

from dashboard.lab.host import lock_holder
from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from publisher.credentials import ENV


async def test_a_refused_password_stops_the_start_with_one_clear_line(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    password, wrong = secret("pw"), secret("wrong")
    monkeypatch.setenv(ENV["user"], "alice")
    monkeypatch.setenv(ENV["password"], wrong)
    config = f'authorization {{\n  users = [\n    {{user: alice, password: "{password}"}}\n  ]\n}}\n'
    with running(tmp_path / "server", config) as server:
        app = NatslabApp(replace(settings, nats_url=f"nats://alice:{wrong}@127.0.0.1:{server.port}"))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.view.phase == "failed", 10, "the start to fail")
            caption = app.view.caption
            assert f"natslab could not start: NATS at nats://alice:***@127.0.0.1:{server.port} refused the credentials" in caption
            assert "user alice with a password" in caption
            assert wrong not in caption and password not in caption
            assert lock_holder(settings.data_dir) is None  # nothing hosted, nothing held
            await pilot.press("q")
            await wait_for(pilot, lambda: app.return_code is not None, 10, "the dashboard to leave")
