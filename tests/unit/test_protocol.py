"""The lab protocol's messages survive the wire, and what is not one of them is refused with a reason."""

from __future__ import annotations

import pytest

from dashboard.lab.nodes import NodeView
from dashboard.lab.protocol import (
    HostInfo,
    HostState,
    LabRequestError,
    Notice,
    ProtocolError,
    ScenarioState,
    parse_reply,
    parse_request,
    reply_error,
    reply_ok,
    request,
    result_fields,
)
from dashboard.lab.supervisor import Member
from publisher.events import AccountEvent
from publisher.service import PublishResult

HOST = HostInfo(1234, "lab-host", "natslab up", "/tmp/data", "nats://127.0.0.1:4222", True, "always", 5.0)


def test_a_host_state_comes_back_as_it_went_out() -> None:
    state = HostState(
        HOST,
        (Member("A", "guarded", "account-service", 42, "killed", 1, -9, None), Member("N1", "naive", "account-service-naive", None, "starting")),
        "running",
        True,
        None,
        True,
        ScenarioState("zombie", "a frozen listener", True, ["first", "second"], waiting=True),
        nodes=(
            NodeView("n1", "killed", None, 4222, ("lagging 3", "", "current")),
            NodeView("n2", "running", 77, 4223, ("leader", "leader", "leader")),
        ),
    )  # fmt: skip
    again = HostState.from_json(state.to_json())
    assert again == state
    assert again.nodes[1].leads() == ["stream", "account-service", "account-service-naive"]
    assert again.scenario is not None and again.scenario.running


@pytest.mark.parametrize("payload", [b"[]", b"{}", b'{"host": 1}', b"not json"])
def test_what_is_not_a_host_state_is_refused(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        HostState.from_json(payload)


def test_a_published_notice_carries_the_result_whole() -> None:
    event = AccountEvent.new("deposit", "jim", 7000, 2)
    for result in (PublishResult(event, 7, by_another_relay=True), PublishResult(event, None, outbox_reason="no PubAck")):
        notice = Notice.from_json(Notice("published", {"result": result_fields(result)}).to_json())
        assert notice.kind == "published" and notice.result() == result


def test_requests_and_replies() -> None:
    assert parse_request(request("control", action="kill", name="A")) == ("control", {"action": "kill", "name": "A"})
    with pytest.raises(ProtocolError, match="unknown operation 'explode'"):
        parse_request(request("explode"))
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_request(b"kill A")
    assert parse_reply(reply_ok("A killed", on=True)) == {"ok": True, "done": "A killed", "on": True}
    with pytest.raises(LabRequestError, match="no listener named 'Q'"):
        parse_reply(reply_error("no listener named 'Q'"))
    with pytest.raises(LabRequestError, match="refused"):
        parse_reply(b'{"ok": "yes"}')
