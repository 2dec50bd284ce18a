"""Fixed lab states for the dashboard's snapshot tests: the same messages the workers would post,
with stable pids, ports, timestamps and a frozen clock, so every run draws the same screen."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from textual.message import Message

from dashboard.lab.checker import AppliedRow, DatabaseState, check_data
from dashboard.lab.history import StoredEvent
from dashboard.lab.lab import LabState
from dashboard.lab.nodes import NodeView
from dashboard.lab.observe import ChannelStats, PartitionsSeen
from dashboard.lab.supervisor import Member
from dashboard.ui.app import NatslabApp
from dashboard.ui.messages import (
    AccountsRead,
    CaptionSaid,
    ChannelStatsFetched,
    CheckFinished,
    ConsumerInfoFetched,
    ListenerStatusReceived,
    PartitionsFetched,
    ScenarioFinished,
    ScenarioStarted,
)
from dashboard.ui.view import ConsumerView
from listeners.accounts import AccountRow
from listeners.groups import group_for_mode
from listeners.partitions import PartitionState
from listeners.status import ListenerStatus
from publisher.events import AccountEvent

FROZEN_NOW = 1_800_000_000.0  # what the frozen clock says: 2027-01-15 08:00:00 UTC
URL = "nats://127.0.0.1:4222"

JIM_AND_MARY = [
    # (stream seq, type, user, number, cents)
    (1, "account:deposit", "mary", 1, 4000),
    (2, "account:deposit", "jim", 1, 7000),
    (3, "account:deposit", "jim", 2, 4000),
    (4, "account:withdraw", "jim", 3, 10000),
]


# Every event of JIM_AND_MARY applied, in a database's commit order.
JIM_AND_MARY_APPLIED = (("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied"))


def frozen_clock() -> float:
    return FROZEN_NOW


def event(seq: int, kind: str, user: str, number: int, cents: int) -> AccountEvent:
    return AccountEvent(f"evt-{seq:04d}", kind, user, cents, number, f"2027-01-15T07:59:{seq:02d}.000Z")  # type: ignore[arg-type]


def stored(seq: int, kind: str, user: str, number: int, cents: int) -> StoredEvent:
    account_event = event(seq, kind, user, number, cents)
    return StoredEvent(
        seq, account_event.subject, account_event.to_json(), account_event, None, account_event.created_at
    )


def held(stream_seq: int, count: int = 1) -> dict[str, Any]:
    """An event in flight, as a listener's status lists it."""
    _, kind, user, number, cents = JIM_AND_MARY[stream_seq - 1]
    return {
        "streamSeq": stream_seq,
        "deliveryCount": count,
        "id": f"evt-{stream_seq:04d}",
        "userId": user,
        "number": number,
        "type": kind,
        "amountCents": cents,
    }


def delivery(
    seq: int,
    stream_seq: int,
    count: int,
    outcome: str,
    at: str,
    *,
    last: tuple[int, int] | None = None,
    balance: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A processed delivery: the listener's own `seq`, the outcome, when (seconds past 07:59 UTC), and
    the facts of its rule: the user's last number and balance before and after (a naive listener
    has no number rule, so no `last`)."""
    data = held(stream_seq, count) | {"seq": seq, "outcome": outcome, "at": f"2027-01-15T07:59:{at}Z"}
    if last is not None:
        data |= {"lastBefore": last[0], "lastAfter": last[1]}
    if balance is not None:
        data |= {"balanceBefore": balance[0], "balanceAfter": balance[1]}
    return data


def status(
    name: str,
    pid: int,
    mode: str = "guarded",
    *,
    counters: dict[str, int] | None = None,
    deliveries: Iterable[dict[str, Any]] = (),
    in_flight: Iterable[dict[str, Any]] = (),
    in_flight_since: float | None = None,
    partitions: dict[int, str] | None = None,
    slow_user: tuple[str, int] | None = None,
) -> ListenerStatus:
    """A status as a listener would publish it, parsed as the lab parses it; a partitioned one names
    the pins of the partitions it owns."""
    deliveries = list(deliveries)
    in_flight = list(in_flight)
    data = {
        "name": name,
        "pid": pid,
        "mode": mode,
        "group": group_for_mode(mode).name,  # type: ignore[arg-type]
        "defer": "nak",
        "state": "running",
        "slowMs": 0,
        "crashArmed": None,
        "counters": {"applied": 0, "rejected": 0, "duplicates": 0, "deferred": 0, "poison": 0, "redelivered": 0}
        | (counters or {}),
        "inFlightCount": len(in_flight),
        "inFlight": in_flight,
        "inFlightSince": in_flight_since,
        "lastEvent": deliveries[-1] if deliveries else None,
        "deliveries": deliveries,
        "ts": "2027-01-15T07:59:59.000Z",
        "partitions": {str(partition): pin for partition, pin in (partitions or {}).items()},
        "slowUser": slow_user[0] if slow_user else None,
        "slowUserMs": slow_user[1] if slow_user else 0,
    }
    return ListenerStatus.from_json(json.dumps(data))


def consumer(
    name: str,
    delivered: tuple[int, int],
    floor: tuple[int, int],
    *,
    ack_pending: int = 0,
    redelivered: int = 0,
    pending: int = 0,
    waiting: int = 1,
) -> ConsumerView:
    return ConsumerView(
        name, delivered[0], delivered[1], floor[0], floor[1], ack_pending, redelivered, pending, waiting
    )


def channels(deposits: dict[str, int], withdrawals: dict[str, int], last: tuple[int, int]) -> dict[str, ChannelStats]:
    return {
        "account:deposit": ChannelStats("account:deposit", sum(deposits.values()), last[0], deposits),
        "account:withdraw": ChannelStats("account:withdraw", sum(withdrawals.values()), last[1], withdrawals),
    }


def members(*entries: tuple[str, str, int, str, int]) -> list[Member]:
    return [
        Member(name, mode, group_for_mode(mode).name, pid, state, restarts)  # type: ignore[arg-type]
        for name, mode, pid, state, restarts in entries
    ]


def report(
    events: list[tuple[int, str, str, int, int]],
    guarded: DatabaseState,
    naive: DatabaseState,
    partitioned: DatabaseState | None = None,
    partition_floors: tuple[int | None, ...] = (),
    snapshot_seq: int | None = None,
):
    """The checker's report on these databases; `partition_floors` (the ACCOUNT_EVENTS seq each
    partition acknowledged up to) tell the partitioned group's pending events from lost ones."""
    stream = [stored(*row) for row in events]
    # By default a check of the whole stream: it has seen everything the latest poll has.
    snapshot = max((row[0] for row in events), default=0) if snapshot_seq is None else snapshot_seq
    floors = {"partitioned": partition_floors} if partition_floors else None
    return check_data(
        stream,
        [s.event for s in stream if s.event is not None],
        [],
        guarded,
        naive,
        ack_floors=floors,
        snapshot_seq=snapshot,
        partitioned=partitioned,
    )


def database(accounts: dict[str, tuple[int, int]], applied: list[tuple[str, int, str]]) -> DatabaseState:
    return DatabaseState(accounts=accounts, applied=[AppliedRow(*row) for row in applied])


def rows(accounts: dict[str, tuple[int, int]]) -> list[AccountRow]:
    return [AccountRow(user, last, balance) for user, (last, balance) in sorted(accounts.items())]


def post_all(app: NatslabApp, *messages) -> None:
    for message in messages:
        app.post_message(message)


def started(app: NatslabApp) -> None:
    """What `LabStarted` does, without starting the polls: there is no lab behind a fake state."""
    app.view.phase, app.view.url = "running", URL
    app.view.say("Ready. d deposits, w withdraws, x runs a scenario, ? lists every key.")


OVERTAKING = "overtaking-withdrawal"
OVERTAKING_SUMMARY = "a withdrawal overtakes the deposit it needs, held by a dying listener"
OVERTAKING_LESSON = (
    "Redelivery brings the lost deposit back, but after the withdrawal that needed it: arrival order is not the"
    " order of events. Applying only each user's next number keeps the guarded balance right."
)
OVERTAKING_STEPS = (
    "Guarded listeners A, B share the queue group account-service; naive N1 reads account-service-naive.",
    "Publisher: Mary deposits $40 (Mary #1), Jim deposits $70 (Jim #1).",
    "Every listener slows down, so whoever takes Jim's next deposit, +$40 (Jim #2), sits on it.",
    "Listener A holds Jim's +$40 (#2) and dies before acknowledging it (SIGKILL); so does N1.",
    "Jim withdraws $100 (Jim #3). It reaches the survivors before the deposit it depends on.",
)


def overtaking_captions(steps: int = len(OVERTAKING_STEPS), *, step_mode: bool = False) -> list[Message]:
    """The scenario's start and its first `steps` captions, as the driver posts them."""
    return [
        ScenarioStarted(OVERTAKING, OVERTAKING_SUMMARY, step_mode),
        *(CaptionSaid(caption, waiting=step_mode) for caption in OVERTAKING_STEPS[:steps]),
    ]


def a_applied_mary_and_jim_holding_jim_2(since: float) -> ListenerStatusReceived:
    """Listener A applied Mary #1 and Jim #1 and holds Jim #2, fetched at `since`."""
    return ListenerStatusReceived(
        status(
            "A",
            4101,
            counters={"applied": 2},
            deliveries=[
                delivery(1, 1, 1, "applied", "01.101", last=(0, 1), balance=(0, 4000)),
                delivery(2, 2, 1, "applied", "01.902", last=(0, 1), balance=(0, 7000)),
            ],
            in_flight=[held(3)],
            in_flight_since=since,
        )
    )


# -- the states ------------------------------------------------------------------------------------


def fresh_start(app: NatslabApp) -> None:
    """Just started: two guarded listeners and a naive one, nothing published yet."""
    app.view.apply_members(
        members(
            ("A", "guarded", 4101, "running", 0),
            ("B", "guarded", 4102, "running", 0),
            ("N1", "naive", 4103, "running", 0),
        )
    )
    app.view.set_server(URL, "running", True, True)
    started(app)
    empty = database({}, [])
    post_all(
        app,
        ListenerStatusReceived(status("A", 4101)),
        ListenerStatusReceived(status("B", 4102)),
        ListenerStatusReceived(status("N1", 4103, "naive")),
        ConsumerInfoFetched(consumer("account-service", (0, 0), (0, 0), waiting=2)),
        ConsumerInfoFetched(consumer("account-service-naive", (0, 0), (0, 0), waiting=1)),
        ChannelStatsFetched(channels({}, {}, (0, 0)), FROZEN_NOW),
        AccountsRead([], []),
        CheckFinished(report([], empty, empty)),
    )


def after_overtaking(app: NatslabApp) -> None:
    """The end of the overtaking-withdrawal scenario: A died holding Jim's +$40, B applied it late and in order;
    the naive listener applied Jim's withdrawal first and kept the $100."""
    app.view.apply_members(
        members(
            ("A", "guarded", 4101, "killed", 0),
            ("B", "guarded", 4102, "running", 0),
            ("N1", "naive", 4103, "killed", 0),
        )
    )
    app.view.set_server(URL, "running", True, True)
    guarded_accounts = {"jim": (3, 1000), "mary": (1, 4000)}
    naive_accounts = {"jim": (2, 11000), "mary": (1, 4000)}
    held_since = FROZEN_NOW - 30
    started(app)
    post_all(
        app,
        a_applied_mary_and_jim_holding_jim_2(held_since),
        ListenerStatusReceived(
            status(
                "N1",
                4103,
                "naive",
                counters={"applied": 2},
                deliveries=[
                    delivery(1, 1, 1, "applied", "01.104", balance=(0, 4000)),
                    delivery(2, 2, 1, "applied", "01.905", balance=(0, 7000)),
                ],
                in_flight=[held(3)],
                in_flight_since=held_since,
            )
        ),
        ListenerStatusReceived(
            status(
                "B",
                4102,
                counters={"applied": 2, "deferred": 3, "redelivered": 4},
                deliveries=[
                    delivery(1, 4, 1, "deferred", "05.310", last=(1, 1)),
                    delivery(2, 4, 2, "deferred", "05.420", last=(1, 1)),
                    delivery(3, 4, 3, "deferred", "05.640", last=(1, 1)),
                    delivery(4, 3, 2, "applied", "08.012", last=(1, 2), balance=(7000, 11000)),
                    delivery(5, 4, 4, "applied", "08.012", last=(2, 3), balance=(11000, 1000)),
                ],
            )
        ),
        ListenerStatusReceived(
            status(
                "N1",
                4203,
                "naive",
                counters={"applied": 1, "rejected": 1, "redelivered": 1},
                deliveries=[
                    delivery(1, 4, 1, "rejected", "05.300", balance=(7000, 7000)),
                    delivery(2, 3, 2, "applied", "08.020", balance=(7000, 11000)),
                ],
            )
        ),
        ConsumerInfoFetched(consumer("account-service", (9, 4), (9, 4), waiting=1)),
        ConsumerInfoFetched(consumer("account-service-naive", (6, 4), (6, 4), waiting=1)),
        ChannelStatsFetched(channels({"jim": 2, "mary": 1}, {"jim": 1}, (3, 4)), FROZEN_NOW),
        AccountsRead(rows(guarded_accounts), rows(naive_accounts)),
        *overtaking_captions(),
        ScenarioFinished(OVERTAKING_LESSON),
        CheckFinished(
            report(
                JIM_AND_MARY,
                database(
                    guarded_accounts,
                    [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")],
                ),
                database(
                    naive_accounts,
                    [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 3, "rejected"), ("jim", 2, "applied")],
                ),
            )
        ),
    )
    # A was killed holding Jim #2 and B took it over; N1 was restarted under a new pid.
    app.view.apply_members(
        members(
            ("A", "guarded", 4101, "killed", 0),
            ("B", "guarded", 4102, "running", 0),
            ("N1", "naive", 4203, "running", 1),
        )
    )


def server_down(app: NatslabApp) -> None:
    """Mary's and Jim's events are in, then the NATS server goes away: the dashboard says so and waits."""
    fresh_start(app)
    accounts = {"jim": (3, 1000), "mary": (1, 4000)}
    applied = [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")]
    post_all(
        app,
        ListenerStatusReceived(
            status(
                "A",
                4101,
                counters={"applied": 3},
                deliveries=[
                    delivery(1, 1, 1, "applied", "01.101"),
                    delivery(2, 2, 1, "applied", "01.902"),
                    delivery(3, 4, 1, "applied", "03.120"),
                ],
            )
        ),
        ListenerStatusReceived(
            status("B", 4102, counters={"applied": 1}, deliveries=[delivery(1, 3, 1, "applied", "02.410")])
        ),
        ListenerStatusReceived(
            status(
                "N1",
                4103,
                "naive",
                counters={"applied": 4},
                deliveries=[
                    delivery(1, 1, 1, "applied", "01.104"),
                    delivery(2, 2, 1, "applied", "01.905"),
                    delivery(3, 3, 1, "applied", "02.412"),
                    delivery(4, 4, 1, "applied", "03.122"),
                ],
            )
        ),
        ConsumerInfoFetched(consumer("account-service", (4, 4), (4, 4), waiting=2)),
        ConsumerInfoFetched(consumer("account-service-naive", (4, 4), (4, 4), waiting=1)),
        ChannelStatsFetched(channels({"jim": 2, "mary": 1}, {"jim": 1}, (3, 4)), FROZEN_NOW),
        AccountsRead(rows(accounts), rows(accounts)),
        CheckFinished(report(JIM_AND_MARY, database(accounts, applied), database(accounts, applied))),
    )
    app.view.set_server(URL, "down", False, True)


def mid_scenario(app: NatslabApp) -> None:
    """The first scenario run step by step, at its fourth caption, waiting for Space: A holds Jim #2."""
    fresh_start(app)
    post_all(
        app,
        a_applied_mary_and_jim_holding_jim_2(FROZEN_NOW - 2),
        ConsumerInfoFetched(consumer("account-service", (3, 3), (2, 2), ack_pending=1, waiting=1)),
        ChannelStatsFetched(channels({"jim": 2, "mary": 1}, {}, (3, 0)), FROZEN_NOW),
        AccountsRead(rows({"jim": (1, 7000), "mary": (1, 4000)}), rows({"jim": (1, 7000), "mary": (1, 4000)})),
        *overtaking_captions(4, step_mode=True),
    )


def cluster_after_a_node_kill(app: NatslabApp) -> None:
    """A cluster of three: n1 led everything and was killed; n2 leads the stream, n3 the naive
    consumer, and the guarded consumer is still electing."""
    fresh_start(app)
    lab_members = tuple(app.view.listeners[name].member for name in ("A", "B", "N1"))
    before = (
        NodeView("n1", "running", 5101, 4222, ("leader", "leader", "leader")),
        NodeView("n2", "running", 5102, 4223, ("current", "current", "current")),
        NodeView("n3", "running", 5103, 4224, ("current", "lagging 3", "current")),
    )
    after = (
        NodeView("n1", "killed", None, 4222, ("lagging 12", "", "lagging 9")),
        NodeView("n2", "running", 5102, 4223, ("leader", "current", "current")),
        NodeView("n3", "running", 5103, 4224, ("current", "current", "leader")),
    )
    for nodes in (before, after):
        app.view.apply_state(LabState(lab_members, "running", True, "no stream leader answers (NATS may be electing one)", nodes))  # type: ignore[arg-type]


def partition(number: int, pin: str | None, *, pending: int = 0, ack_pending: int = 0, delivered: int = 0) -> PartitionState:
    return PartitionState(number, pin, delivered, delivered - ack_pending, ack_pending, 0, pending, 1 if pin else 0)


def partitioned_failover(app: NatslabApp) -> None:
    """The overtaking scenario's end, with the partitioned group beside it: P1 was killed; Jim's
    partition p2 waits for a standby (P2) to take it over, Mary's p1 is P2's, p0 has had no event.
    P2 skipped one duplicate, so the guard acted once. The check sees Jim's #2 and #3 pending in p2
    (its ack floor is Jim #1, stream seq 2)."""
    app.view.apply_members(members(("P1", "partitioned", 4104, "running", 0), ("P2", "partitioned", 4105, "running", 0)))
    app.view.selected = None  # A is selected, as in a lab started with A first
    after_overtaking(app)
    app.view.apply_members(members(("P1", "partitioned", 4104, "killed", 0)))
    guarded_accounts = {"jim": (3, 1000), "mary": (1, 4000)}
    naive_accounts = {"jim": (2, 11000), "mary": (1, 4000)}
    partitioned_accounts = {"jim": (1, 7000), "mary": (1, 4000)}  # Jim's #2 and #3 wait in p2
    post_all(
        app,
        ListenerStatusReceived(
            status(
                "P1",
                4104,
                "partitioned",
                counters={"applied": 1},
                deliveries=[delivery(1, 2, 1, "applied", "01.950", last=(0, 1), balance=(0, 7000))],
                partitions={0: "pin-p0", 2: "pin-p2"},
            )
        ),
        ListenerStatusReceived(
            status(
                "P2",
                4105,
                "partitioned",
                counters={"applied": 1, "duplicates": 1, "redelivered": 1},
                deliveries=[delivery(1, 1, 1, "applied", "01.120", last=(0, 1), balance=(0, 4000))],
                partitions={1: "pin-p1"},
            )
        ),
        PartitionsFetched(
            PartitionsSeen(
                3,
                (
                    partition(0, None),
                    partition(1, "pin-p1", delivered=1),
                    partition(2, None, pending=1, ack_pending=1, delivered=2),
                ),
            )
        ),
        AccountsRead(rows(guarded_accounts), rows(naive_accounts), rows(partitioned_accounts)),
        CheckFinished(
            report(
                JIM_AND_MARY,
                database(guarded_accounts, [*JIM_AND_MARY_APPLIED]),
                database(naive_accounts, [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 3, "rejected"), ("jim", 2, "applied")]),
                database(partitioned_accounts, [("mary", 1, "applied"), ("jim", 1, "applied")]),
                (0, 1, 2),
            )
        ),
    )
