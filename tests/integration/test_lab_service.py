"""The lab as a service: one host, several clients, requests over NATS and what every client sees;
and `natslab up` / `natslab down` as a user runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.lab.client import LabClient, LabStarting, NoLab, ping
from dashboard.lab.host import Hosted, HostLock, lock_holder, open_lab
from dashboard.lab.protocol import Notice
from dashboard.lab.scenarios import SCENARIOS
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError, wait_until

NATSLAB = [sys.executable, "-m", "dashboard.commands"]


async def attached(url: str) -> tuple[LabClient, list[Notice]]:
    client = LabClient(url)
    notices: list[Notice] = []
    client.on_notice.append(notices.append)
    await client.attach()
    return client, notices


def member_state(client: LabClient, name: str) -> str | None:
    state = client.state
    return next((member.state for member in state.members if member.name == name), None) if state else None


async def test_a_kill_asked_by_one_client_shows_in_the_other(hosted: Hosted, settings: Settings) -> None:
    first, _ = await attached(hosted.lab.url)
    second, seen = await attached(hosted.lab.url)
    try:
        assert second.state is not None and second.state.host.pid == os.getpid()
        assert member_state(second, "A") == "running"
        reply = await first.request("control", action="kill", name="A")
        assert reply["done"].startswith("A killed (SIGKILL)")
        await wait_until(lambda: member_state(second, "A") == "killed", 5, "the other client to see A killed")
        await wait_until(lambda: any(n.kind == "controlled" for n in seen), 5, "the other client's notice")
        assert hosted.lab.supervisor is not None and not hosted.lab.supervisor.listeners["A"].alive

        reply = await second.request("publish", kind="deposit", user="jim", amount_cents=7000)
        assert reply["done"].startswith("stream seq ")
        await wait_until(lambda: [n for n in seen if n.kind == "published"], 5, "the published notice")
        published = [n for n in seen if n.kind == "published"]
        assert published[0].result().event.user_id == "jim" and published[0].result().stream_seq == 1
    finally:
        await first.close()
        await second.close()


async def test_a_request_the_lab_cannot_carry_out_says_why(hosted: Hosted) -> None:
    client, _ = await attached(hosted.lab.url)
    try:
        with pytest.raises(LabError, match="no listener named 'Q'"):
            await client.request("control", action="kill", name="Q")
        with pytest.raises(LabError, match="kind must be deposit or withdraw"):
            await client.request("publish", kind="transfer", user="jim", amount_cents=100)
        with pytest.raises(LabError, match="user"):
            await client.request("publish", kind="deposit", user="jim smith", amount_cents=100)
        with pytest.raises(LabError, match="no scenario named"):
            await client.request("scenario", name="nope")
        with pytest.raises(LabError, match="no scenario is waiting for a step"):
            await client.request("step")
    finally:
        await client.close()


async def test_a_scenario_the_host_runs_ends_with_its_lesson_and_the_runs_own_figures(hosted: Hosted) -> None:
    client, seen = await attached(hosted.lab.url)
    try:
        await client.request("scenario", name="hot-partition", step_mode=False)

        def ended() -> Notice | None:
            return next((n for n in seen if n.kind in ("scenario-finished", "scenario-failed")), None)

        await wait_until(ended, 60, "the scenario to end")
        end = ended()
        assert end is not None and end.kind == "scenario-finished", end
        lesson = end.fields["text"]
        assert lesson.startswith(SCENARIOS["hot-partition"].lesson + " Here Hot's partition-mates waited "), lesson
        # A dashboard attaching later reads the same, from the host's state.
        await wait_until(
            lambda: client.state is not None and client.state.scenario is not None and client.state.scenario.lesson == lesson,
            5,
            "the host's state to keep the lesson",
        )
    finally:
        await client.close()


async def test_a_second_dashboard_attaches_instead_of_starting_another_lab(hosted: Hosted, settings: Settings) -> None:
    holder = lock_holder(settings.data_dir)
    assert holder == {"pid": os.getpid(), "command": "the test", "url": hosted.lab.url}
    url, second = await open_lab(settings, "another dashboard")
    assert second is None and url == hosted.lab.url


async def test_no_lab_is_said_at_once_and_clients_notice_the_host_going(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(NoLab, match="no lab runs on"):
        await open_lab(settings, "the test", attach_only=True)
    url, lab = await open_lab(settings, "the test")
    assert lab is not None
    client, _ = await attached(url)
    try:
        assert client.gone() is None
        await lab.stop("the host was told to stop")
        await wait_until(lambda: client.gone() is not None, 5, "the client to notice")
        assert client.gone() == "the host was told to stop"
        assert await ping(url) is None
        assert lock_holder(settings.data_dir) is None
    finally:
        await client.close()
        await lab.stop("again")


def start_up(data_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*NATSLAB, "up", "--data-dir", str(data_dir), "--ack-wait", "2", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def natslab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*NATSLAB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


async def test_up_runs_the_lab_until_down_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = start_up(data)
    try:
        assert up.stdout is not None
        url = (await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), 60)).strip()
        assert url.startswith("nats://127.0.0.1:")
        state = await ping(url)
        assert state is not None and state.host.command == "natslab up" and state.host.pid == up.pid
        assert {member.name for member in state.members} == {"A", "B", "N1", "P1", "P2"}

        again = natslab("up", "--data-dir", str(data))
        assert again.returncode == 1
        assert f"a lab already runs on {data} (natslab up, pid {up.pid})" in again.stderr

        down = natslab("down", "--data-dir", str(data))
        assert down.returncode == 0, down.stderr
        assert f"stopped the lab of {data} (natslab up, pid {up.pid})" in down.stderr
        assert up.wait(timeout=30) == 0
        assert "stopped: natslab down" in up.stderr.read()
        assert await ping(url) is None

        nothing = natslab("down", "--data-dir", str(data))
        assert nothing.returncode == 0
        assert "no lab runs on" in nothing.stderr and "nothing to stop" in nothing.stderr
    finally:
        if up.poll() is None:
            up.kill()
        up.wait()


async def test_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    up = start_up(tmp_path / "data", "--listeners", "1", "--naive", "0")
    try:
        assert up.stdout is not None
        url = (await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), 60)).strip()
        assert await ping(url) is not None
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        assert "stopped: natslab up was terminated (SIGTERM)" in up.stderr.read()
        assert lock_holder(tmp_path / "data") is None
    finally:
        if up.poll() is None:
            up.kill()
        up.wait()


def test_web_refuses_a_port_another_program_holds_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = natslab("web", "--data-dir", str(tmp_path / "data"), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"natslab: port {port} on 127.0.0.1 is in use by another program; pick another --port"
    assert not (tmp_path / "data" / "lab.lock").exists()


async def test_a_lab_whose_host_holds_the_lock_but_does_not_answer_yet_is_starting(settings: Settings) -> None:
    lock = HostLock(settings.data_dir)
    assert lock.acquire("the test")
    try:
        with pytest.raises(LabStarting, match=f"the lab on {settings.data_dir} is starting \\(the test, pid {os.getpid()}\\)"):
            await open_lab(settings, "a dashboard")
    finally:
        lock.release()
