"""The parts of the dashboard's view: a timeline entry, a listener, a consumer, a channel, a scenario's
log, an account line; plain data that `LabView` (in `view.py`) is made of. No Textual, no I/O."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import api

from dashboard.lab.observe import ChannelStats
from dashboard.lab.protocol import ScenarioState
from dashboard.lab.supervisor import Member
from listeners.accounts import AccountRow
from listeners.status import CounterFold, DeliveryReport, ListenerStatus

TIMELINE_LIMIT = 500
RATE_SAMPLES = 40
CHANNELS = ("account:deposit", "account:withdraw")
SECTIONS = frozenset({"caption", "channels", "groups", "listeners", "accounts", "timeline", "status", "nodes"})
# A process in one of these states holds nothing any more: the server redelivers what it had.
GONE = frozenset({"killed", "crashed", "exited", "stopped"})
# What the lab did to a listener, as the timeline says it, by the state it left the listener in.
MEMBER_EVENTS = {"killed": "killed (SIGKILL)", "paused": "paused (SIGSTOP)", "exited": "exited", "stopped": "stopped"}
SERVER_EVENTS = {
    "restarting": "NATS server restarting (the stream is kept on disk)",
    "down": "NATS server down",
    "running": "NATS server running again",
}


LAB = "lab"  # the outcome of a timeline entry that is something the lab did, not a delivery


def iso_utc(unix: float) -> str:
    """`2027-01-15T08:00:00.250Z`: the listeners' timestamp format, for what the lab does."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One delivery of one event to one listener, what the listener did with it and the rule that
    decided it; or (outcome `lab`) something the lab did: a kill, a pause, a server restart."""

    listener: str
    pid: int
    seq: int
    stream_seq: int
    event: str
    delivery_count: int
    outcome: str
    at: str
    rule: str = ""

    @property
    def lab_event(self) -> bool:
        return self.outcome == LAB

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.listener, self.pid, self.seq)

    @property
    def redelivery(self) -> bool:
        return self.delivery_count > 1

    @property
    def clock(self) -> str:
        """`14:03:07.250` from the listener's ISO-8601 UTC timestamp."""
        _, _, time_part = self.at.partition("T")
        return time_part.rstrip("Z")[:12] or self.at

    @classmethod
    def from_report(cls, listener: str, pid: int, report: DeliveryReport) -> TimelineEntry:
        return cls(
            listener,
            pid,
            report.seq,
            report.stream_seq,
            report.describe(),
            report.delivery_count,
            report.outcome or "?",
            report.at,
            report.rule(),
        )

    @classmethod
    def from_lab(cls, number: int, text: str, at: float) -> TimelineEntry:
        return cls(LAB, 0, number, 0, text, 0, LAB, iso_utc(at))


@dataclass(frozen=True, slots=True)
class HeldNote:
    """What happens to an event a killed or paused listener holds: redelivery due in `due` seconds
    (counted from its fetch), or already taken over by another delivery."""

    due: float | None
    taken_over: TimelineEntry | None

    def short(self) -> str:
        if self.taken_over is not None:
            return f"→ {self.taken_over.listener} ×{self.taken_over.delivery_count} {self.taken_over.outcome}"
        assert self.due is not None
        return f"redelivery in {self.due:.1f}s" if self.due > 0 else "redelivery due"

    def long(self) -> str:
        if self.taken_over is not None:
            entry = self.taken_over
            return f"redelivered to {entry.listener} ×{entry.delivery_count}, {entry.outcome}"
        return self.short()


@dataclass(slots=True)
class ListenerView:
    """One listener: its process (the lab's member) and its own account of its work (status messages)."""

    name: str
    mode: str
    group: str
    member: Member | None = None
    status: ListenerStatus | None = None
    counts: CounterFold = field(default_factory=CounterFold)

    def apply_status(self, status: ListenerStatus) -> None:
        self.status = status
        self.counts.add(status)

    def total(self, counter: str) -> int:
        """A counter over every process this listener has been, so it only ever goes up."""
        return self.counts.total(counter)

    @property
    def status_pid(self) -> int | None:
        return self.status.pid if self.status is not None else None

    @property
    def pid(self) -> int | None:
        if self.member is not None:
            return self.member.pid
        return self.status_pid

    @property
    def fresh(self) -> bool:
        """The status in hand comes from the process that runs now."""
        return self.status is not None and (self.member is None or self.member.pid == self.status_pid)

    @property
    def state(self) -> str:
        member = self.member
        if member is not None and member.state != "running":
            return member.state
        if not self.fresh:
            return "restarting" if member is not None and member.restarts else "starting"
        assert self.status is not None
        return self.status.state

    @property
    def gone(self) -> bool:
        return self.member is not None and self.member.state in GONE

    @property
    def in_flight(self) -> tuple[DeliveryReport, ...]:
        """What the listener holds; a dead one's last report, since the server still counts it as pending."""
        if self.status is None or not (self.fresh or self.gone):
            return ()
        return self.status.in_flight

    @property
    def in_flight_count(self) -> int:
        if self.status is None or not (self.fresh or self.gone):
            return 0
        return self.status.in_flight_count

    def redelivery_in(self, ack_wait_s: float, now: float) -> float | None:
        """Seconds until the server redelivers what this listener holds, counted from its fetch."""
        if self.status is None or not self.in_flight or self.status.in_flight_since is None:
            return None
        return self.status.in_flight_since + ack_wait_s - now

    @property
    def last_event(self) -> DeliveryReport | None:
        return self.status.last_event if self.status is not None else None

    @property
    def live_status(self) -> ListenerStatus | None:
        """The status of the process that runs now, if it runs."""
        return self.status if self.fresh and not self.gone else None

    @property
    def slow_ms(self) -> int:
        status = self.live_status
        return status.slow_ms if status is not None else 0

    @property
    def crash_armed(self) -> str | None:
        status = self.live_status
        return status.crash_armed if status is not None else None


@dataclass(frozen=True, slots=True)
class ConsumerView:
    """A queue group's durable consumer as the server sees it (what `nats consumer info` shows)."""

    name: str
    delivered_consumer_seq: int = 0
    delivered_stream_seq: int = 0
    ack_floor_consumer_seq: int = 0
    ack_floor_stream_seq: int = 0
    ack_pending: int = 0
    redelivered: int = 0
    pending: int = 0
    waiting: int = 0

    @classmethod
    def from_info(cls, info: api.ConsumerInfo) -> ConsumerView:
        delivered = info.delivered or api.SequenceInfo(0, 0)
        floor = info.ack_floor or api.SequenceInfo(0, 0)
        return cls(
            info.name,
            delivered.consumer_seq or 0,
            delivered.stream_seq or 0,
            floor.consumer_seq or 0,
            floor.stream_seq or 0,
            info.num_ack_pending or 0,
            info.num_redelivered or 0,
            info.num_pending or 0,
            info.num_waiting or 0,
        )


@dataclass(slots=True)
class ChannelView:
    stats: ChannelStats
    rates: deque[float] = field(default_factory=lambda: deque([0.0] * RATE_SAMPLES, maxlen=RATE_SAMPLES))
    sampled_at: float | None = None


# The running (or last) scenario, as the lab's host reports it and the caption bar shows it.
ScenarioLog = ScenarioState


# A user whose next number has been missing this long is shown as waiting for it.
WAITING_SHOWN_AFTER_S = 1.0


def parse_utc(iso: str) -> float | None:
    """Unix time of an ISO-8601 timestamp (`...Z`), or None when it is not one."""
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AccountLine:
    """One user in the account pane: each group's database, what the checker expects and the verdicts.

    Every verdict comes from the checker's own snapshot (one consistent read of stream and databases),
    not from comparing live rows with an older expectation; `None` when the checker has not seen the
    user yet (or, for the partitioned group, has no database of it to judge).
    """

    user_id: str
    guarded: AccountRow | None
    naive: AccountRow | None
    expected: tuple[int, int] | None  # (last number, balance in cents)
    guarded_ok: bool | None = None
    naive_ok: bool | None = None
    settling: bool = False  # events still in flight: a difference may yet resolve
    waiting: str = ""  # "missing #4 since 12:03:10" (UTC) while the guard waits for a missing number
    stuck: bool = False  # ... and has parked the events behind it: the check fails until it comes
    partitioned: AccountRow | None = None
    partitioned_ok: bool | None = None

    @property
    def guarded_differs(self) -> bool:
        return self.guarded_ok is False

    @property
    def partitioned_differs(self) -> bool:
        return self.partitioned_ok is False

    @property
    def naive_differs(self) -> bool:
        return self.naive_ok is False


def member_event(view: ListenerView, before: Member | None, after: Member, running: bool = True) -> str | None:
    """A kill, pause, resume, restart or crash, as a timeline row: what the lab did, and what the
    listener held at that moment (what the server will hand to another member)."""
    if before is None and running:  # added while the lab runs (a, or a scenario); not the first ones
        return f"{after.name} added to {after.group} (a new listener process)"
    if before is None or (after.state == before.state and after.restarts == before.restarts):
        return None
    if after.restarts > before.restarts or (before.state in GONE and after.state in ("running", "restarting")):
        text = f"{after.name} restarted (a new process)"
    elif after.state == "crashed":
        code = f"exit {after.exit_code}" if after.exit_code is not None else "crashed"
        text = f"{after.name} crashed ({code})"
    elif after.state in MEMBER_EVENTS:
        text = f"{after.name} {MEMBER_EVENTS[after.state]}"
    elif before.state == "paused" and after.state == "running":
        text = f"{after.name} resumed (SIGCONT)"
    else:
        return None
    if after.state in ("killed", "paused", "crashed"):
        held = view.in_flight
        if held:
            more = view.in_flight_count - 1
            text += f" holding {held[0].describe()}" + (f" +{more}" if more > 0 else "")
        else:
            text += " holding nothing"
    return text


def guard_waiting(row: AccountRow | None, now: float) -> tuple[str, bool]:
    """What the guard waits for, when a user's next number has been missing for a while (a
    moment is normal: the predecessor is usually a few milliseconds behind)."""
    if row is None or row.waiting_since is None:
        return "", False
    since = parse_utc(row.waiting_since)
    if not row.parked and (since is None or now - since < WAITING_SHOWN_AFTER_S):
        return "", False
    clock = row.waiting_since.partition("T")[2][:8]
    text = f"missing #{row.last_number + 1} since {clock}"
    if row.parked:
        text += f" · {row.parked} parked"
    return text, row.parked > 0
