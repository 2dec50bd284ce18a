"""The embedded JetStream cluster (`--cluster 3`): replicated stream and consumers, nodes broken one at
a time, and nothing lost or applied twice by the guarded group while leaders move."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest

from dashboard.lab.history import fetch_stored, stream_reader
from dashboard.lab.lab import Lab, claim_topology
from dashboard.lab.nodes import ASSETS, LEADER
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError, wait_until
from listeners.groups import GUARDED_GROUP
from publisher.events import STREAM_NAME

STREAM = ASSETS.index("stream")
LabFactory = Callable[..., Awaitable[Lab]]  # the `make_lab` fixture
NATSLAB = [sys.executable, "-m", "dashboard.commands"]


def leader(lab: Lab, asset: int = STREAM) -> str | None:
    return next((node.name for node in lab.nodes if node.roles[asset:asset + 1] == (LEADER,)), None)


def settled(lab: Lab) -> bool:
    """Every node running, every asset led, every follower current."""
    return (
        len(lab.nodes) == 3
        and all(node.state == "running" for node in lab.nodes)
        and all(leader(lab, index) for index in range(len(ASSETS)))
        and all(role in (LEADER, "current") for node in lab.nodes for role in node.roles)
    )


async def stream_replicas(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(STREAM_NAME)).config.num_replicas
    finally:
        await nc.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_cluster_keeps_every_event_when_the_stream_leader_is_killed(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=2, naive=1, cluster=3)
    await wait_listeners_ready(lab)
    await wait_until(lambda: settled(lab), 30, "the cluster to settle")
    assert lab.url.count(",") == 2  # every node's URL, for every client
    assert (await lab.stream_info()).config.num_replicas == 3
    consumer = await lab.consumer_info(GUARDED_GROUP)
    assert consumer.cluster is not None and len(consumer.cluster.replicas or ()) == 2  # as many as the stream
    pids = [node.pid for node in lab.nodes]
    assert lab.publisher is not None
    for index in range(30):
        await lab.publisher.record("deposit", f"user{index % 3}", 100 + index)

    doomed = leader(lab)
    assert doomed is not None
    done = await lab.node_control("kill", doomed)
    assert done.startswith(f"node {doomed} killed (SIGKILL); it led stream"), done
    assert next(node for node in lab.nodes if node.name == doomed).state == "killed"
    for index in range(30):  # while the others elect: the outbox keeps them
        await lab.publisher.record("withdraw", f"user{index % 3}", 1)
    await wait_until(lambda: leader(lab) not in (None, doomed), 30, "a new stream leader")
    await wait_drained(lab, timeout=60)
    report = await lab.check()
    assert report.ok and report.guarded.clean, report.verdict_line()
    assert report.stream_events == 60

    restarted = await lab.node_control("restart", doomed)
    assert restarted.startswith(f"node {doomed} restarted"), restarted
    await wait_until(lambda: settled(lab), 30, f"{doomed} to catch up")
    await lab.stop()
    assert not any(alive(pid) for pid in pids if pid is not None)


async def test_nodes_pause_resume_and_step_down_and_refuse_what_they_cannot_do(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=1, naive=0, cluster=3)
    await wait_until(lambda: settled(lab), 30, "the cluster to settle")
    stream_leader = leader(lab)
    follower = next(node.name for node in lab.nodes if node.name != stream_leader)

    assert (await lab.node_control("pause", follower)).startswith(f"node {follower} paused (SIGSTOP)")
    with pytest.raises(LabError, match=f"node {follower} is paused: pause needs it running or lame duck"):
        await lab.node_control("pause", follower)
    assert (await lab.node_control("resume", follower)).startswith(f"node {follower} resumed (SIGCONT)")
    with pytest.raises(LabError, match=f"node {follower} is running: resume needs it paused"):
        await lab.node_control("resume", follower)
    with pytest.raises(LabError, match="no node named 'n9'"):
        await lab.node_control("kill", "n9")

    done = await lab.node_control("lame-duck", stream_leader)  # type: ignore[arg-type]
    assert "it hands them over" in done, done
    await wait_until(lambda: leader(lab) not in (None, stream_leader), 20, "the stream to move")
    await wait_until(
        lambda: any(node.name == stream_leader and node.state == "stopped" for node in lab.nodes),
        60,
        "the lame duck to leave",
    )
    with pytest.raises(LabError, match=r"only a restart \(R\) brings it back"):
        await lab.node_control("kill", stream_leader)  # type: ignore[arg-type]
    await lab.node_control("restart", stream_leader)  # type: ignore[arg-type]
    await wait_until(lambda: settled(lab), 30, "the cluster to settle again")


async def test_a_stream_reader_asks_again_until_a_cluster_without_a_majority_recovers(
    make_lab: LabFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Right after nodes come back, a reader's consumer cannot be made for a few seconds: the request
    # times out or meets no leader. The reader asks again rather than giving up (the history a check
    # reads at the end of a cluster chaos run once failed this way).
    lab = await make_lab(listeners=0, naive=0, cluster=3)
    await wait_until(lambda: settled(lab), 30, "the cluster to settle")
    assert lab.publisher is not None
    for index in range(5):
        await lab.publisher.record("deposit", "ann", 100 + index)

    async def stored() -> bool:
        return (await lab.stream_info()).state.last_seq == 5

    await wait_until(stored, 30, "the five events in the stream")
    kept, *frozen = lab.nodes
    nc = await nats.connect(f"nats://127.0.0.1:{kept.port}", connect_timeout=2, max_reconnect_attempts=5)
    try:
        for node in frozen:
            await lab.node_control("pause", node.name)
        caplog.set_level(logging.DEBUG, logger="dashboard.lab.history")

        async def read() -> list[int]:
            async with stream_reader(nc.jetstream(), 1, "test") as sub:
                return [msg.metadata.sequence.stream for msg in await fetch_stored(sub, 10, 5.0)]

        reading = asyncio.ensure_future(read())
        await wait_until(lambda: "test reader not made yet" in caplog.text, 30, "the reader to be refused")
        assert not reading.done()
        for node in frozen:
            await lab.node_control("resume", node.name)
        assert await asyncio.wait_for(reading, 30) == [1, 2, 3, 4, 5]
    finally:
        await nc.close()


async def test_a_lab_of_one_server_has_no_nodes_to_break(settings: Settings) -> None:
    with pytest.raises(LabError, match="not a cluster: start it with --cluster 3"):
        await Lab(settings).node_control("kill", "n1")


def test_a_data_dir_keeps_to_the_kind_of_server_its_databases_belong_to(tmp_path: Path) -> None:
    single, cluster = Settings(data_dir=tmp_path), Settings(data_dir=tmp_path, cluster=3)
    (tmp_path / "transactions.db").write_bytes(b"")  # a lab from before the topology file
    with pytest.raises(LabError, match="ran on one server.*a cluster of 3 needs a data dir of its own"):
        claim_topology(cluster)
    claim_topology(single)
    assert single.topology_file.read_text() == "one server\n"

    fresh = Settings(data_dir=tmp_path / "fresh", cluster=3)
    fresh.data_dir.mkdir()
    claim_topology(fresh)
    with pytest.raises(LabError, match="ran on cluster of 3"):
        claim_topology(Settings(data_dir=fresh.data_dir))
    claim_topology(fresh)  # the same kind again is fine


def test_natslab_server_cluster_prints_one_url_per_node(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*NATSLAB, "server", "--cluster", "3", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in range(3)]
        assert all(url.startswith("nats://127.0.0.1:") for url in urls), urls
        assert len(set(urls)) == 3
        assert (tmp_path / "nats.url").read_text().strip() == ",".join(urls)
        # Given one node's URL, `natslab publish` makes the stream with a replica on each node.
        published = subprocess.run(
            [*NATSLAB, "publish", "deposit", "ann", "5", "--nats-url", urls[0], "--data-dir", str(tmp_path / "client")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert asyncio.run(stream_replicas(urls[1])) == 3
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "JetStream cluster of 3 nodes" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--cluster", "4"], "'4' is not a cluster size; a JetStream cluster here has 3 or 5 nodes"),
        (["server", "--cluster", "3", "--port", "4222"], "a cluster's nodes take free ports"),
        (["--cluster", "3", "--nats-url", "nats://127.0.0.1:4222"], "--cluster starts natslab's own nodes"),
    ],
)
def test_cluster_options_that_cannot_work_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [*NATSLAB, *args, "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "data").exists()
