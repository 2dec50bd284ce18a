"""The partitioned group's pure parts: the hash, the subjects, the consumer info, the home partitions,
the slow-user command and what a status says of partitions."""

from __future__ import annotations

import pytest

from listeners.faults import Faults
from listeners.partitions import (
    PartitionState,
    consumer_config,
    event_subject,
    home_partitions,
    partition_of,
    partition_owners,
    partitions_of_transform,
    source_sequence,
    transform_destination,
)
from listeners.status import ListenerStatus, parse_control


def test_partition_of_is_fnv1a_of_the_user_token_modulo_n() -> None:
    # Values the server gave for {{partition(3,2)}} (research against nats-server 2.15.1).
    assert partition_of("jim", 3) == 2
    assert partition_of("", 3) == 0x811C9DC5 % 3
    assert {partition_of(f"user{i}", 3) for i in range(30)} == {0, 1, 2}
    assert all(partition_of(f"user{i}", 1) == 0 for i in range(10))


def test_the_transform_names_its_partition_count_and_it_is_read_back() -> None:
    destination = transform_destination(5)
    assert destination == "account.{{wildcard(1)}}.{{wildcard(2)}}.{{partition(5,2)}}"
    assert partitions_of_transform(destination) == 5
    assert partitions_of_transform("account.{{wildcard(1)}}") is None
    assert partitions_of_transform(None) is None


@pytest.mark.parametrize(
    ("stored", "event"),
    [
        ("account.deposit.jim.2", "account.deposit.jim"),
        ("account.withdraw.a-b_c.11", "account.withdraw.a-b_c"),
        ("account.deposit.jim", "account.deposit.jim"),  # not partitioned: as it is
        ("account.deposit.jim.x", "account.deposit.jim.x"),  # not a partition: as it is, and poison later
    ],
)
def test_the_partition_token_is_taken_off_a_stored_subject(stored: str, event: str) -> None:
    assert event_subject(stored) == event


def test_the_source_sequence_comes_from_the_servers_header() -> None:
    header = "ACCOUNT_EVENTS 42 account.*.* account.{{wildcard(1)}}.{{wildcard(2)}}.{{partition(3,2)}}"
    assert source_sequence({"Nats-Stream-Source": header}) == 42
    assert source_sequence({"Nats-Stream-Source": "OTHER 42"}) is None
    assert source_sequence({}) is None
    assert source_sequence(None) is None


def test_a_partition_consumer_is_pinned_and_takes_one_batch_at_a_time() -> None:
    config = consumer_config(1, 5.0)
    assert config["filter_subject"] == "account.*.*.1"
    assert (config["priority_policy"], config["priority_groups"]) == ("pinned_client", ["owner"])
    assert config["ack_wait"] == 5_000_000_000 and config["max_deliver"] == -1


def test_consumer_info_gives_the_pin_and_the_lag() -> None:
    info = {
        "priority_groups": [{"group": "owner", "pinned_client_id": "PIN1", "pinned_ts": "..."}],
        "delivered": {"stream_seq": 9},
        "ack_floor": {"stream_seq": 7},
        "num_ack_pending": 2,
        "num_pending": 3,
        "num_redelivered": 1,
        "num_waiting": 1,
    }
    state = PartitionState.from_info(2, info)
    assert (state.pinned_id, state.delivered, state.ack_floor, state.lag, state.redelivered) == ("PIN1", 9, 7, 5, 1)
    assert PartitionState.from_info(0, {}).pinned_id is None


def test_the_owner_is_the_listener_whose_status_names_the_current_pin() -> None:
    states = [PartitionState.from_info(p, {"priority_groups": [{"group": "owner", "pinned_client_id": pin}]}) for p, pin in ((0, "new"), (1, ""))]
    statuses = [
        ListenerStatus("P1", 1, "partitioned", "g", "killed", partitions={0: "old"}),  # died; its pin is gone
        ListenerStatus("P2", 2, "partitioned", "g", "running", partitions={0: "new"}),
    ]
    assert partition_owners(states, statuses) == {0: "P2", 1: None}


def test_home_partitions_spread_the_partitions_over_the_group() -> None:
    assert home_partitions(1, 2, 3) == [0, 2]
    assert home_partitions(2, 2, 3) == [1]
    assert home_partitions(3, 2, 3) == []  # added beyond the group's size: stands by only
    assert [home_partitions(i, 3, 3) for i in (1, 2, 3)] == [[0], [1], [2]]


def test_the_slow_user_command_is_parsed_and_normal_clears_it() -> None:
    assert parse_control("slow-user jim 300") == ("slow-user", 300, "jim")
    for bad in ("slow-user jim", "slow-user jim x", "slow-user ji.m 3", "slow-user jim 3 4"):
        with pytest.raises(ValueError, match="unknown control command"):
            parse_control(bad)
    faults = Faults()
    assert faults.apply("slow-user jim 300") == "ok"
    assert (faults.slow_user, faults.slow_user_ms) == ("jim", 300)
    assert faults.apply("slow-user jim 0") == "ok" and faults.slow_user is None
    faults.apply("slow-user jim 300")
    assert faults.apply("normal") == "ok" and (faults.slow_user, faults.slow_user_ms) == (None, 0)


def test_a_status_carries_its_partitions_and_slow_user_through_json() -> None:
    status = ListenerStatus("P1", 7, "partitioned", "account-service-partitioned", "running", partitions={0: "a", 2: "b"}, slow_user="jim", slow_user_ms=300)
    back = ListenerStatus.from_json(status.to_json())
    assert (back.partitions, back.slow_user, back.slow_user_ms) == ({0: "a", 2: "b"}, "jim", 300)
    assert ListenerStatus.from_json(b'{"name": "A", "partitions": {"x": 1}}').partitions == {}
