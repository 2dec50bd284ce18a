"""Model-based test: hypothesis drives the real system with faults and checks the guard's invariants.

Rules publish, kill, pause, resume and restart listeners, and restart the server. After every step the
guarded database must be a correct prefix of each user's history (numbers 1..last applied once, in
order, with the balance the business rule gives); at the end the system drains and the checker's full
verdict must be clean. Bounded in examples, steps and time: every example starts its own lab.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dashboard.lab.lab import Lab
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from publisher.events import AccountEvent, apply_business_rule

USERS = ("ann", "bob", "cy")


class GuardedSystem(RuleBasedStateMachine):
    """Rules draw only from the model (which listener the rules left running, paused or killed), never
    from live process state, so hypothesis sees the same choices when it replays a run."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="natslab-model-")
        self.lab: Lab | None = None
        self.listeners: dict[str, str] = {}  # name -> running, paused or killed, as the rules left it
        self.published: dict[str, list[AccountEvent]] = {user: [] for user in USERS}

    @initialize()
    def start_lab(self) -> None:
        # Started here, not in __init__: hypothesis calls teardown() once an initialize rule has run,
        # so a lab that fails to become ready is still stopped.
        self.lab = Lab(Settings(data_dir=Path(self.tmp.name), ack_wait_s=1.0, partitioned=0))
        self.run(self.lab.start(listeners=2, naive=0))
        self.run(wait_listeners_ready(self.lab))
        self.listeners = dict.fromkeys(sorted(self.supervisor.listeners), "running")

    def run(self, coroutine):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout=120))

    @property
    def supervisor(self):
        assert self.lab is not None and self.lab.supervisor is not None
        return self.lab.supervisor

    def names(self, state: str) -> list[str]:
        return [name for name, now in self.listeners.items() if now == state]

    @rule(user=st.sampled_from(USERS), deposit=st.booleans(), dollars=st.integers(1, 120), count=st.integers(1, 15))
    def publish(self, user: str, deposit: bool, dollars: int, count: int) -> None:
        assert self.lab is not None and self.lab.publisher is not None
        for _ in range(count):
            event = self.run(self.lab.publisher.record("deposit" if deposit else "withdraw", user, dollars * 100))
            self.published[user].append(event)

    @precondition(lambda self: bool(self.names("running")))
    @rule(data=st.data())
    def kill(self, data) -> None:
        name = data.draw(st.sampled_from(self.names("running")))
        self.run(self.lab.control("kill", name))
        self.listeners[name] = "killed"

    @precondition(lambda self: bool(self.names("running")))
    @rule(data=st.data())
    def pause(self, data) -> None:
        name = data.draw(st.sampled_from(self.names("running")))
        self.run(self.lab.control("pause", name))
        self.listeners[name] = "paused"

    @precondition(lambda self: bool(self.names("paused")))
    @rule(data=st.data())
    def resume(self, data) -> None:
        name = data.draw(st.sampled_from(self.names("paused")))
        self.run(self.lab.control("resume", name))
        self.listeners[name] = "running"

    @precondition(lambda self: bool(self.listeners))
    @rule(data=st.data())
    def restart_listener(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.listeners)))
        self.run(self.lab.control("restart", name))
        self.listeners[name] = "running"

    @precondition(lambda self: self.lab is not None)
    @rule()
    def restart_server(self) -> None:
        assert self.lab is not None
        self.run(self.lab.restart_server())

    @invariant()
    def guarded_database_is_a_correct_prefix(self) -> None:
        if self.lab is None:
            return
        path = self.lab.settings.data_dir / "accounts.db"
        if not path.exists():
            return
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        try:
            # One read transaction: the listeners keep committing batches, and two reads outside one
            # would see the accounts before a batch and its applied_events after it.
            db.execute("BEGIN")
            accounts = dict((u, (n, b)) for u, n, b in db.execute("SELECT user_id, last_number, balance_cents FROM accounts"))
            applied = db.execute("SELECT user_id, number FROM applied_events ORDER BY rowid").fetchall()
            db.execute("COMMIT")
        finally:
            db.close()
        for user, (last, balance) in accounts.items():
            numbers = [number for who, number in applied if who == user]
            assert numbers == list(range(1, last + 1)), f"{user}: applied {numbers}, last {last}"
            expected = 0
            for event in self.published[user][:last]:
                expected, _ = apply_business_rule(expected, event)
            assert balance == expected, f"{user}: balance {balance}, expected {expected} after #{last}"

    def teardown(self) -> None:
        try:
            if self.lab is not None and self.lab.supervisor is not None:
                for name in self.names("paused"):
                    self.run(self.lab.control("resume", name))
                for name in self.names("killed"):
                    self.run(self.lab.control("restart", name))
                self.run(wait_drained(self.lab, timeout=90))
                report = self.run(self.lab.check())
                assert report.ok, report.problems
                published = sum(len(events) for events in self.published.values())
                assert sum(user.expected_last for user in report.users) == published
        finally:
            try:
                if self.lab is not None:
                    self.run(self.lab.stop())
            finally:
                self.loop.close()
                self.tmp.cleanup()


GuardedSystem.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
test_guarded_system_under_faults = GuardedSystem.TestCase
