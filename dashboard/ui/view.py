"""What the dashboard knows about the lab: plain data that the panes render.

The app's message handlers fold what its workers and the lab report into one `LabView` (listener
statuses, consumer and channel info, account rows, the checker's report, the lab's processes), and
mark the sections they changed; the panes read it a few times a second. Its methods only fold and
read data (no Textual, no I/O), so a snapshot test can build a view by hand and a unit test can check
the folding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import api

from dashboard.lab.checker import CheckReport, Totals
from dashboard.lab.lab import LabState
from dashboard.lab.observe import ChannelStats
from dashboard.lab.supervisor import Member
from listeners.accounts import AccountRow, Mode
from listeners.groups import GROUPS
from listeners.status import CounterFold, DeliveryReport, ListenerStatus

TIMELINE_LIMIT = 500
RATE_SAMPLES = 40
CHANNELS = ("account:deposit", "account:withdraw")
SECTIONS = frozenset({"caption", "channels", "groups", "listeners", "accounts", "timeline", "status"})
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
            getattr(report, "rule", lambda: "")(),  # TODO-merge
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


@dataclass(slots=True)
class ScenarioLog:
    """The running (or last) scenario: every caption it said, kept so each step stays readable.

    In step mode the scenario waits after each caption until the user asks for the step (`waiting`);
    when it ends, `lesson` says what it showed, or `error` why it stopped.
    """

    name: str
    summary: str
    step_mode: bool
    steps: list[str] = field(default_factory=list)
    waiting: bool = False
    finished: bool = False
    lesson: str = ""
    error: str | None = None

    @property
    def running(self) -> bool:
        return not self.finished


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
    """One user in the account pane: both databases, what the checker expects and its verdicts.

    The verdicts come from the checker's own snapshot (one consistent read of stream and databases),
    not from comparing live rows with an older expectation; `None` when the checker has not seen
    the user yet.
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

    @property
    def guarded_differs(self) -> bool:
        return self.guarded_ok is False

    @property
    def naive_differs(self) -> bool:
        return self.naive_ok is False


@dataclass(slots=True)
class LabView:
    """Everything the panes show, and which parts changed since they last drew."""

    url: str | None = None
    embedded: bool = True
    server_state: str = "starting"
    connected: bool = False
    phase: str = "starting"  # starting, running, stopping, failed
    ack_wait_s: float = 5.0
    sync: str | None = None  # the embedded server's sync mode; None when the server is external
    outbox_error: str | None = None
    poll_error: str | None = None
    caption: str = ""
    caption_kind: str = "info"  # info, lesson, warning, error
    scenario: ScenarioLog | None = None
    trickling: bool = False
    now: float = 0.0
    selected: str | None = None
    listeners: dict[str, ListenerView] = field(default_factory=dict)
    consumers: dict[str, ConsumerView] = field(default_factory=dict)
    channels: dict[str, ChannelView] = field(default_factory=dict)
    accounts: dict[str, dict[str, AccountRow]] = field(default_factory=lambda: {"guarded": {}, "naive": {}})
    report: CheckReport | None = None
    checking: bool = False
    timeline: deque[TimelineEntry] = field(default_factory=lambda: deque(maxlen=TIMELINE_LIMIT))
    timeline_total: int = 0  # entries ever added, so the timeline pane can append only the new ones
    dirty: set[str] = field(default_factory=lambda: set(SECTIONS))
    _seen: dict[tuple[str, int, int], None] = field(default_factory=dict)
    _lab_events: int = 0

    def mark(self, *sections: str) -> None:
        self.dirty.update(sections)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    # -- folding what the workers report ----------------------------------------------------------

    def say(self, caption: str, kind: str = "info") -> None:
        self.caption, self.caption_kind = caption, kind
        self.mark("caption")

    def scenario_started(self, name: str, summary: str, step_mode: bool) -> None:
        self.scenario = ScenarioLog(name, summary, step_mode)
        self.mark("caption")

    def scenario_step(self, caption: str, waiting: bool) -> None:
        if self.scenario is not None:
            self.scenario.steps.append(caption)
            self.scenario.waiting = waiting
            self.mark("caption")

    def scenario_resumed(self) -> None:
        if self.scenario is not None and self.scenario.waiting:
            self.scenario.waiting = False
            self.mark("caption")

    def scenario_ended(self, lesson: str = "", error: str | None = None) -> None:
        """The step captions give way to one closing line: what the scenario showed, or why it stopped."""
        scenario = self.scenario
        if scenario is None:
            return
        scenario.finished, scenario.waiting, scenario.lesson, scenario.error = True, False, lesson, error
        if error is not None:
            self.say(f"{scenario.name} stopped: {error}", "error")
        else:
            self.say(f"{scenario.name} finished. What it showed: {lesson}", "lesson")

    def lab_event(self, text: str, at: float) -> None:
        """Something the lab did (a kill, a pause, a server restart), as a timeline row of its own."""
        self._lab_events += 1
        self.timeline.append(TimelineEntry.from_lab(self._lab_events, text, at))
        self.timeline_total += 1
        self.mark("timeline")

    def set_server(self, url: str | None, state: str, connected: bool, embedded: bool) -> None:
        if (self.url, self.server_state, self.connected, self.embedded) != (url, state, connected, embedded):
            self.url, self.server_state, self.connected, self.embedded = url, state, connected, embedded
            self.mark("status", "listeners")

    def apply_state(self, state: LabState) -> None:
        """The lab's processes, server and outbox, as its last change left them."""
        if state.server_state != self.server_state and self.phase == "running":
            self.lab_event(SERVER_EVENTS.get(state.server_state, f"NATS server {state.server_state}"), self.now)
        self.set_server(self.url, state.server_state, state.connected, self.embedded)
        if self.outbox_error != state.outbox_error:
            self.outbox_error = state.outbox_error
            self.mark("status")
        self.apply_members(state.members)

    def listener(self, name: str, mode: str, group: str) -> ListenerView:
        view = self.listeners.get(name)
        if view is None:
            view = self.listeners[name] = ListenerView(name, mode, group)
            if self.selected is None:
                self.selected = name
        return view

    def apply_members(self, members: tuple[Member, ...] | list[Member]) -> None:
        changed = False
        for member in members:
            view = self.listener(member.name, member.mode, member.group)
            if view.member != member:
                if view.member is not None:
                    self._member_event(view, view.member, member)
                view.member = member
                changed = True
        if changed:
            self.mark("groups", "listeners")

    def _member_event(self, view: ListenerView, before: Member, after: Member) -> None:
        """A kill, pause, resume, restart or crash, as a timeline row: what the lab did, and what the
        listener held at that moment (what the server will hand to another member)."""
        if after.state == before.state and after.restarts == before.restarts:
            return
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
            return
        if after.state in ("killed", "paused", "crashed"):
            held = view.in_flight
            if held:
                more = view.in_flight_count - 1
                text += f" holding {held[0].describe()}" + (f" +{more}" if more > 0 else "")
            else:
                text += " holding nothing"
        self.lab_event(text, self.now)

    def apply_status(self, status: ListenerStatus) -> None:
        view = self.listener(status.name, status.mode, status.group)
        view.apply_status(status)
        added = 0
        for report in status.deliveries:
            entry = TimelineEntry.from_report(status.name, status.pid, report)
            if entry.key in self._seen:
                continue
            self._seen[entry.key] = None
            self.timeline.append(entry)
            added += 1
        if added:
            self.timeline_total += added
            while len(self._seen) > 2 * TIMELINE_LIMIT:
                del self._seen[next(iter(self._seen))]
            self.mark("timeline")
        self.mark("groups", "listeners", "status")

    def apply_consumer(self, info: ConsumerView) -> None:
        if self.consumers.get(info.name) != info:
            self.consumers[info.name] = info
            self.mark("groups", "listeners", "status")

    def apply_channels(self, stats: dict[str, ChannelStats], at: float) -> None:
        for name, channel_stats in stats.items():
            channel = self.channels.get(name)
            if channel is None:
                self.channels[name] = ChannelView(channel_stats, sampled_at=at)
                continue
            elapsed = at - (channel.sampled_at or at)
            if elapsed > 0:
                grown = max(0, channel_stats.messages - channel.stats.messages)
                channel.rates.append(grown / elapsed)
            channel.stats, channel.sampled_at = channel_stats, at
        self.poll_error = None
        self.mark("channels", "status")

    def apply_accounts(self, guarded: list[AccountRow], naive: list[AccountRow]) -> None:
        rows = {"guarded": {row.user_id: row for row in guarded}, "naive": {row.user_id: row for row in naive}}
        if rows != self.accounts:
            self.accounts = rows
            self.mark("accounts", "status")

    def apply_report(self, report: CheckReport) -> None:
        self.report, self.checking = report, False
        self.mark("accounts", "status")

    # -- reading, for the panes --------------------------------------------------------------------

    def ordered_listeners(self) -> list[ListenerView]:
        """Guarded listeners first, then naive ones; the order of the `1`-`9` keys."""
        return sorted(self.listeners.values(), key=lambda v: (v.mode != "guarded", len(v.name), v.name))

    def redelivered_to(self, holder: ListenerView, held: DeliveryReport) -> TimelineEntry | None:
        """The later delivery, to another member of the holder's group, of an event the holder held."""
        seq, count = held.stream_seq, held.delivery_count
        for entry in reversed(self.timeline):
            other = self.listeners.get(entry.listener)
            if (
                entry.stream_seq == seq
                and entry.delivery_count > count
                and (entry.listener != holder.name or entry.pid != holder.status_pid)
                and other is not None
                and other.group == holder.group
            ):
                return entry
        return None

    def held_note(self, holder: ListenerView) -> HeldNote | None:
        """For a killed or paused listener holding events: when the server hands the first one on,
        or the delivery that took it over."""
        held = holder.in_flight
        if not held or not (holder.gone or holder.state == "paused"):
            return None
        taken_over = self.redelivered_to(holder, held[0])
        due = holder.redelivery_in(self.ack_wait_s, self.now)
        if taken_over is None and due is None:
            return None
        return HeldNote(due, taken_over)

    def early(self, held: DeliveryReport) -> str:
        """`waits for #2` when a held event came before its predecessor was processed (guarded database)."""
        if held.user_id is None:
            return ""
        row = self.accounts["guarded"].get(held.user_id)
        last = row.last_number if row is not None else 0
        return f"waits for #{last + 1}" if held.number > last + 1 else ""

    def counting_down(self) -> bool:
        """A card shows a redelivery countdown or a holding time, so it must be redrawn as time passes."""
        return any(listener.in_flight for listener in self.listeners.values())

    def group_members(self, group: str) -> list[ListenerView]:
        return [view for view in self.ordered_listeners() if view.group == group]

    def account_lines(self) -> list[AccountLine]:
        verdicts = {user.user_id: user for user in self.report.users} if self.report is not None else {}
        guarded, naive = self.accounts["guarded"], self.accounts["naive"]
        settling = any(self.settling(group.name) for group in GROUPS)
        lines = []
        for name in sorted(set(guarded) | set(naive) | set(verdicts)):
            user = verdicts.get(name)
            waiting, stuck = self._waiting(guarded.get(name))
            if user is None:
                lines.append(AccountLine(name, guarded.get(name), naive.get(name), None, waiting=waiting, stuck=stuck))
                continue
            expected = (user.expected_last, user.expected_balance_cents)
            lines.append(
                AccountLine(
                    name,
                    guarded.get(name),
                    naive.get(name),
                    expected,
                    user.guarded_ok(),
                    user.naive_ok(),
                    settling,
                    waiting,
                    stuck,
                )  # fmt: skip
            )
        return lines

    def _waiting(self, row: AccountRow | None) -> tuple[str, bool]:
        """What the guard waits for, when a user's next number has been missing for a while (a
        moment is normal: the predecessor is usually a few milliseconds behind)."""
        if row is None or row.waiting_since is None:
            return "", False
        since = parse_utc(row.waiting_since)
        if not row.parked and (since is None or self.now - since < WAITING_SHOWN_AFTER_S):
            return "", False
        clock = row.waiting_since.partition("T")[2][:8]
        text = f"missing #{row.last_number + 1} since {clock}"
        if row.parked:
            text += f" · {row.parked} parked"
        return text, row.parked > 0

    def published(self) -> int:
        """Events stored in the stream, on both channels."""
        return sum(channel.stats.messages for channel in self.channels.values())

    def last_seq(self) -> int:
        """The stream's last sequence as the latest poll saw it."""
        return max((channel.stats.last_seq or 0 for channel in self.channels.values()), default=0)

    def backlog(self, group: str) -> int | None:
        """Events the group's consumer has not had acknowledged yet: not delivered, or delivered and
        still unacknowledged. None before the first consumer info."""
        consumer = self.consumers.get(group)
        return None if consumer is None else consumer.pending + consumer.ack_pending

    def done(self, group: str) -> int | None:
        """Events of the stream the group has acknowledged (processed, or set aside)."""
        backlog = self.backlog(group)
        return None if backlog is None else max(0, self.published() - backlog)

    def unaccounted(self, group: str) -> int:
        """Events the server counts as delivered and unacknowledged that no member's last report holds:
        a listener paused or killed between a fetch and its next status holds them."""
        consumer = self.consumers.get(group)
        if consumer is None:
            return 0
        return max(0, consumer.ack_pending - sum(member.in_flight_count for member in self.group_members(group)))

    def check_is_current(self) -> bool:
        """The checker's last report saw the stream as far as the latest poll did."""
        return self.report is not None and self.report.snapshot_seq >= self.last_seq()

    def verdict(self, mode: Mode) -> Totals | None:
        if self.report is None:
            return None
        return self.report.guarded if mode == "guarded" else self.report.naive

    def settling(self, group: str) -> bool:
        """The group still has events to deliver or to acknowledge: a non-clean verdict may resolve."""
        consumer = self.consumers.get(group)
        return consumer is not None and (consumer.pending > 0 or consumer.ack_pending > 0)
