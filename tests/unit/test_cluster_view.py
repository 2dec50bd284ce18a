"""What the dashboard makes of the nodes the host reports: the timeline rows for each change, the node
the keys act on, and the roles read from JetStream's cluster info."""

from __future__ import annotations

import asyncio

from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import NoStreamResponseError

from dashboard.lab.nodes import NodeView, leaderless, roles_in
from dashboard.ui.cluster_view import ClusterView, node_events
from publisher.service import publish_failure

ALL_LED_BY_N1 = (
    NodeView("n1", "running", 1, 4222, ("leader", "leader", "leader")),
    NodeView("n2", "running", 2, 4223, ("current", "current", "current")),
    NodeView("n3", "running", 3, 4224, ("current", "lagging 4", "current")),
)
N1_KILLED = (
    NodeView("n1", "killed", None, 4222, ("lagging 9", "", "")),
    NodeView("n2", "running", 2, 4223, ("leader", "current", "")),
    NodeView("n3", "running", 3, 4224, ("current", "current", "")),
)


def test_a_killed_leader_makes_one_row_for_the_kill_and_one_for_each_asset() -> None:
    assert node_events(ALL_LED_BY_N1, N1_KILLED) == [
        "node n1 killed (SIGKILL)",
        "n2 now leads stream (was n1)",
        "account-service: no leader answers (electing one)",
        "account-service-naive: no leader answers (electing one)",
    ]
    assert leaderless(N1_KILLED) == ["account-service", "account-service-naive"]
    assert node_events((), ALL_LED_BY_N1) == []  # the first look is no change


def test_the_view_reports_only_changes_and_keeps_a_selection_among_the_nodes() -> None:
    view = ClusterView()
    assert view.select_next() is None
    assert view.apply(ALL_LED_BY_N1) == []
    assert view.selected == "n1"
    assert view.apply(ALL_LED_BY_N1) is None
    assert [view.select_next() for _ in range(3)] == ["n2", "n3", "n1"]
    assert view.apply(N1_KILLED) is not None and view.node("n1").state == "killed"  # type: ignore[union-attr]


def test_roles_come_from_the_cluster_info() -> None:
    info = api.ClusterInfo(
        leader="n2",
        replicas=[
            api.PeerInfo(name="n1", current=False, lag=7),
            api.PeerInfo(name="n3", current=True),
            api.PeerInfo(name="n4", current=False, offline=True),
            api.PeerInfo(name="n5", current=False),
        ],
    )
    assert roles_in(info) == {"n2": "leader", "n1": "lagging 7", "n3": "current", "n4": "offline", "n5": "catching up"}
    assert roles_in(None) == {}


def test_why_the_outbox_waits_is_said_in_words() -> None:
    assert publish_failure(NoRespondersError()) == "no stream leader answers (NATS may be electing one)"
    assert publish_failure(NoStreamResponseError()) == "no stream leader answers (NATS may be electing one)"
    assert publish_failure(asyncio.TimeoutError()) == "no PubAck within 1 s"
