"""A small seeded chaos run: faults at random points, then the guarded database must be clean."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from dashboard.commands.args import EXIT_USAGE
from dashboard.commands.main import main
from dashboard.lab.chaos import ChaosConfig, fault_plan, run_chaos
from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.lab import Lab
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError


def test_fault_plan_is_seeded_and_complete() -> None:
    config = ChaosConfig(events=500, kills=7, pauses=3, server_restarts=2, seed=9)
    plan = fault_plan(config, random.Random(9))
    assert plan == fault_plan(config, random.Random(9))
    faults = [fault for faults in plan.values() for fault in faults]
    assert sorted(faults) == sorted(["kill"] * 7 + ["pause"] * 3 + ["server-restart"] * 2)
    assert all(0 <= index < 500 for index in plan)
    # Crashes come last: the other faults of a seed stay where they were.
    crashing = fault_plan(dataclasses.replace(config, crashes=2), random.Random(9))
    assert sorted(f for faults in crashing.values() for f in faults) == sorted(faults + ["crash"] * 2)
    assert all([f for f in crashing[index] if f != "crash"] == faults for index, faults in plan.items())


async def test_small_chaos_run_loses_nothing(tmp_path: Path) -> None:
    # With this seed the first listener fault, which finds every listener running (A, N1, P1, P2), is
    # P1's crash after a commit; the others land where they will.
    config = ChaosConfig(
        events=300, users=4, kills=3, pauses=1, crashes=1, server_restarts=1, seed=17, listeners=1, partitioned=2
    )
    lines: list[str] = []
    result = await run_chaos(config, Settings(data_dir=tmp_path / "data", ack_wait_s=1.0), lines.append)
    said = (result.summary(), result.report.verdict_line(), result.report.problems, result.faults)
    assert result.ok, said
    assert result.report.stream_events == 300
    assert len(result.faults) == 6
    listener_faults = [fault.split(": ", 1)[1] for fault in result.faults if "server restart" not in fault]
    assert listener_faults[0] == "crash P1", result.faults
    assert sum(fault.startswith("crash ") for fault in listener_faults) == 1, said
    summary = result.summary()
    assert "lost=0 duplicated=0 out_of_order=0" in summary
    assert "| partitioned: listeners=2 lost=0 duplicated=0 out_of_order=0 wrong_balance=0 redeliveries=" in summary, said
    assert f"guard_acted={result.guard_acted()} (duplicates=" in summary
    # The check judged the third database, every user of it, and its group processed every event.
    partitioned = result.report.partitioned
    assert partitioned is not None and partitioned.clean and partitioned.pending == 0, said
    assert all(user.partitioned is not None and user.partitioned.last_number == user.expected_last for user in result.report.users)
    assert result.partitioned_counts.applied + result.partitioned_counts.rejected > 0
    # What P1 committed before it died came back: the partitioned group's guard dropped it as a duplicate.
    assert result.partitioned_counts.duplicates >= 1 and result.guard_acted() >= 1, said
    assert result.to_json()["partitioned"]["guardActed"] == result.guard_acted()
    assert result.redeliveries + result.partitioned_counts.redelivered > 0, "killing listeners with events in flight must cause redeliveries"
    assert lines and lines[-1].endswith("draining")


def test_node_faults_join_the_plan_and_leave_the_rest_of_it_as_it_was() -> None:
    before = ChaosConfig(events=500, kills=7, pauses=3, server_restarts=2, seed=9)
    after = ChaosConfig(events=500, kills=7, pauses=3, server_restarts=2, seed=9, cluster=3, node_kills=4, node_pauses=2)
    plan = fault_plan(after, random.Random(9))
    faults = sorted(fault for faults in plan.values() for fault in faults)
    assert faults == sorted(["kill"] * 7 + ["pause"] * 3 + ["server-restart"] * 2 + ["node-kill"] * 4 + ["node-pause"] * 2)
    # The listener faults of a seed land where they did before node faults existed.
    old = {index: faults for index, faults in fault_plan(before, random.Random(9)).items()}
    for index, faults in old.items():
        assert [f for f in plan[index] if not f.startswith("node-")] == faults


async def test_node_faults_need_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="cluster"):
        await run_chaos(ChaosConfig(events=10, node_kills=1), Settings(data_dir=tmp_path / "data"))
    assert not (tmp_path / "data").exists()


async def test_small_cluster_chaos_run_breaks_one_node_at_a_time_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every node fault must find every other node running: a cluster of three keeps its majority
    # with one node down, not with two.
    down_at_fault: list[str] = []
    node_control = Lab.node_control

    async def watched(lab: Lab, action: str, name: str) -> str:
        if action in ("kill", "pause"):
            assert isinstance(lab.server, EmbeddedCluster)
            down_at_fault.extend(f"{p.name} {p.state}" for p in lab.server.processes() if p.state != "running")
        return await node_control(lab, action, name)

    monkeypatch.setattr(Lab, "node_control", watched)
    config = ChaosConfig(
        events=300, users=4, kills=2, pauses=0, server_restarts=1, seed=5, listeners=2, cluster=3, node_kills=2, node_pauses=1
    )
    lines: list[str] = []
    result = await run_chaos(config, Settings(data_dir=tmp_path / "data", ack_wait_s=1.0), lines.append)
    assert result.ok, result.report.problems
    assert result.report.stream_events == 300
    assert len(result.faults) == 6
    node_faults = [fault for fault in result.faults if ": node " in fault]
    assert sum("killed (SIGKILL)" in fault for fault in node_faults) == 2
    assert sum("paused (SIGSTOP)" in fault for fault in node_faults) == 1
    assert down_at_fault == []
    assert "cluster=3 node_kills=2 node_pauses=1" in result.summary()
    assert "lost=0 duplicated=0 out_of_order=0" in result.summary()
    # The partitioned group (2 listeners by default) rode out the node faults too, and was checked.
    assert "| partitioned: listeners=2 lost=0 duplicated=0 out_of_order=0 wrong_balance=0" in result.summary()
    assert result.report.partitioned is not None and result.report.partitioned.clean
    assert result.to_json()["config"]["node_kills"] == 2
    assert lines and lines[-1].endswith("draining")


@pytest.mark.parametrize("flag", ["--node-kills", "--node-pauses"])
def test_node_faults_without_a_cluster_are_a_usage_error(
    flag: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATSLAB_CLUSTER", raising=False)
    assert main(["chaos", flag, "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "natslab: --node-kills and --node-pauses break nodes of a cluster: add --cluster 3\n"
