"""What `Publisher.publish` says, against a real server: an event another relay sent first is reported
with its stream sequence (a report of "not sent" invites a retry that records it twice), and an event
is "in the outbox" only while its row is unpublished, with the reason."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dashboard.commands.publish import _publish_one
from dashboard.lab.natsserver import EmbeddedServer
from dashboard.lab.waits import cancel, close_quietly, connect_with_retry, wait_until
from publisher.events import STREAM_NAME, AccountEvent
from publisher.jetstream import ensure_stream
from publisher.service import Publisher, PublishResult
from publisher.transactions import TransactionsDB

PublisherFactory = Callable[[], Awaitable[Publisher]]


@pytest.fixture
async def publishers(nats_server: EmbeddedServer, tmp_path: Path) -> AsyncIterator[PublisherFactory]:
    """Publishers on one `transactions.db`, each with its own connections, as in separate processes."""
    made: list[Publisher] = []

    async def factory() -> Publisher:
        nc = await connect_with_retry(nats_server.url, "natslab-test")
        publisher = Publisher(await TransactionsDB.open(tmp_path / "transactions.db"), nc)
        made.append(publisher)
        await ensure_stream(nc)
        return publisher

    try:
        yield factory
    finally:
        for publisher in made:
            await publisher.db.close()
            assert publisher.nc is not None
            await close_quietly(publisher.nc)


async def stored_id(publisher: Publisher, stream_seq: int) -> str:
    """The event id stored at `stream_seq` in the stream."""
    assert publisher.nc is not None
    message = await publisher.nc.jetstream().get_msg(STREAM_NAME, stream_seq)
    assert message.data is not None and message.subject is not None
    return AccountEvent.from_json(message.data, message.subject).id


async def test_an_event_another_process_sent_first_is_reported_with_its_stream_seq(publishers: PublisherFactory) -> None:
    mine, other = await publishers(), await publishers()
    earlier = await mine.record("deposit", "mary", 100)
    event = await mine.record("deposit", "jim", 700)
    sent = await other.relay_once()
    assert list(sent) == [earlier.id, event.id]
    result = await mine.relay_and_report(event)
    assert result == PublishResult(event, sent[event.id], by_another_relay=True)
    assert result.where() == f"stream seq {sent[event.id]} (sent by another relay)"
    assert await stored_id(mine, sent[event.id]) == event.id


async def test_an_event_the_background_relay_sent_first_is_reported_with_its_stream_seq(
    publishers: PublisherFactory,
) -> None:
    publisher = await publishers()
    relay = asyncio.create_task(publisher.run_relay(), name="outbox-relay")
    try:
        event = await publisher.record("deposit", "jim", 700)

        async def sent() -> bool:
            return await publisher.db.stream_seq(event.id) is not None

        await wait_until(sent, 10, "the background relay to send the event")
        result = await publisher.relay_and_report(event)
    finally:
        await cancel(relay)
    # Its own background relay is no other relay: the dashboard says just where the event is.
    assert not result.by_another_relay and result.stream_seq is not None
    assert result.where() == f"stream seq {result.stream_seq}"
    assert result.stream_seq == await publisher.db.stream_seq(event.id)
    assert await stored_id(publisher, result.stream_seq) == event.id


async def test_publish_beside_the_busy_background_relay_reports_the_stream_seq(publishers: PublisherFactory) -> None:
    """As in the dashboard after a burst: its relay task is still sending when `publish` records, and
    its pass, looping until the outbox is empty, sends the new row too before `publish` may relay."""
    publisher = await publishers()
    relay = asyncio.create_task(publisher.run_relay(), name="outbox-relay")
    try:
        results = []
        for _ in range(3):
            await asyncio.gather(*(publisher.record("deposit", f"user{n % 5}", 100) for n in range(2_000)))
            results.append(await publisher.publish("deposit", "jim", 700))
    finally:
        await cancel(relay)
    for result in results:
        assert result.stream_seq is not None, result.where()
        assert await stored_id(publisher, result.stream_seq) == result.event.id


async def test_natslab_publish_says_in_the_outbox_and_why_when_the_server_went_down(
    nats_server: EmbeddedServer, publishers: PublisherFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # `natslab publish` connects before it records: a server down from the start is "cannot reach
    # NATS" and records nothing (tests/integration/test_cli.py). Here it goes down after the connect.
    publisher = await publishers()
    nc = publisher.nc
    assert nc is not None
    await nats_server.stop()
    await wait_until(lambda: not nc.is_connected, 10, "the client to lose the server")
    code = await _publish_one(publisher, ("deposit", "jim", 700), None)
    (event,) = await publisher.db.unpublished()
    assert code == 1
    assert capsys.readouterr().out == (
        f"jim #1 deposit $7 id={event.id} in the outbox: NATS not connected; it goes out with the next relay\n"
    )


async def test_the_relay_sends_what_the_writer_hands_over_once_in_commit_order_without_reading_it_back(
    publishers: PublisherFactory,
) -> None:
    publisher = await publishers()
    reads = 0
    read_outbox = publisher.db.unpublished

    async def counted(limit: int = 500) -> list[AccountEvent]:
        nonlocal reads
        reads += 1
        return await read_outbox(limit)

    publisher.db.unpublished = counted  # type: ignore[method-assign]
    relay = asyncio.create_task(publisher.run_relay(poll_s=600), name="outbox-relay")

    async def all_marked() -> bool:
        return await publisher.db.count_unpublished() == 0

    try:
        # The relay reads the outbox once as it starts, for rows an earlier process left.
        events = [await publisher.record("deposit", "user0", 100)]
        await wait_until(all_marked, 20, "the relay to send and mark the first event")
        started_with = reads
        events += await asyncio.gather(*(publisher.record("deposit", f"user{n % 7}", 100 + n) for n in range(1_500)))
        await wait_until(all_marked, 20, "the relay to send and mark every event")
    finally:
        await cancel(relay)
    assert publisher.nc is not None
    info = await publisher.nc.jetstream().stream_info(STREAM_NAME)
    assert info.state.messages == len(events)
    stored = [await stored_id(publisher, seq) for seq in range(1, len(events) + 1)]
    # Commit order is the order `record` was called in (group commit keeps it), so the stream has it too.
    assert stored == [event.id for event in events]
    # Every event after the start came from the writer, none from a read of the outbox.
    assert started_with >= 1 and reads == started_with


async def test_rows_another_process_wrote_go_out_while_this_one_keeps_writing(publishers: PublisherFactory) -> None:
    mine, other = await publishers(), await publishers()
    relay = asyncio.create_task(mine.run_relay(poll_s=0.2), name="outbox-relay")

    async def keep_writing() -> None:
        while True:
            await mine.record("deposit", "mary", 100)
            await asyncio.sleep(0.01)

    writing = asyncio.create_task(keep_writing(), name="writer")
    try:
        foreign = await other.record("deposit", "jim", 700)

        async def sent() -> bool:
            return await mine.db.stream_seq(foreign.id) is not None

        # The relay wakes for every record of its own, so only its poll of the outbox finds this row.
        await wait_until(sent, 10, "the busy relay to send a row another process wrote")
    finally:
        await cancel(writing)
        await cancel(relay)
    seq = await mine.db.stream_seq(foreign.id)
    assert seq is not None and await stored_id(mine, seq) == foreign.id


async def test_relay_passes_leave_no_subscription_behind(nats_server: EmbeddedServer, publishers: PublisherFactory) -> None:
    publisher = await publishers()
    assert nats_server.monitor_url is not None and publisher.nc is not None
    await publisher.nc.flush()

    def subscriptions() -> int:
        with urllib.request.urlopen(f"{nats_server.monitor_url}/connz?subs=1", timeout=5) as reply:
            connections = json.load(reply)["connections"]
        (mine,) = [c for c in connections if c.get("cid") == publisher.nc.client_id]  # type: ignore[union-attr]
        return len(mine.get("subscriptions_list", []))

    await publisher.publish("deposit", "jim", 100)  # the first pass makes the PubAck inbox
    await publisher.nc.flush()
    before = subscriptions()
    for _ in range(30):
        result = await publisher.publish("deposit", "jim", 100)
        assert result.stream_seq is not None
    await publisher.nc.flush()
    # Thirty more relay passes, the same subscriptions (a new JetStream context each pass added one).
    assert subscriptions() == before
