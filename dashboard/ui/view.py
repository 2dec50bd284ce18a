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

from dashboard.lab.checker import CheckReport, Totals
from dashboard.lab.lab import LabState
from dashboard.lab.observe import ChannelStats, PartitionsSeen
from dashboard.lab.supervisor import Member
from dashboard.ui.account_view import account_lines
from dashboard.ui.cluster_view import ClusterView
from dashboard.ui.partitions_view import PartitionsView, partition_moves
from dashboard.ui.view_items import (
    CHANNELS,
    GONE,
    LAB,
    RATE_SAMPLES,
    SECTIONS,
    SERVER_EVENTS,
    TIMELINE_LIMIT,
    AccountLine,
    ChannelView,
    ConsumerView,
    HeldNote,
    ListenerView,
    ScenarioLog,
    TimelineEntry,
    iso_utc,
    member_event,
    parse_utc,
)
from listeners.accounts import AccountRow, Mode
from listeners.groups import ALL_GROUPS, PARTITIONED_GROUP
from listeners.status import Counts, DeliveryReport, ListenerStatus

__all__ = [
    "CHANNELS", "GONE", "LAB", "RATE_SAMPLES", "SECTIONS", "TIMELINE_LIMIT", "AccountLine", "ChannelView",
    "ConsumerView", "HeldNote", "LabView", "ListenerView", "ScenarioLog", "TimelineEntry", "iso_utc", "parse_utc",
]  # fmt: skip


def redelivered_to(
    timeline: deque[TimelineEntry], listeners: dict[str, ListenerView], holder: ListenerView, held: DeliveryReport
) -> TimelineEntry | None:
    """The later delivery, to another member of the holder's group, of an event the holder held."""
    seq, count = held.stream_seq, held.delivery_count
    for entry in reversed(timeline):
        other = listeners.get(entry.listener)
        if (
            entry.stream_seq == seq
            and entry.delivery_count > count
            and (entry.listener != holder.name or entry.pid != holder.status_pid)
            and other is not None
            and other.group == holder.group
        ):
            return entry
    return None


@dataclass(slots=True)
class LabView:
    """Everything the panes show, and which parts changed since they last drew."""

    url: str | None = None
    embedded: bool = True
    server_state: str = "starting"
    connected: bool = False
    # starting, waiting (no lab to attach to yet), running, lost (the lab's host went away), stopping, failed
    phase: str = "starting"
    host: str | None = None  # who hosts the lab this dashboard is attached to; None: this dashboard
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
    cluster: ClusterView = field(default_factory=ClusterView)  # the nodes, with --cluster
    partitions: PartitionsView = field(default_factory=PartitionsView)  # the partitioned group's partitions
    listeners: dict[str, ListenerView] = field(default_factory=dict)
    consumers: dict[str, ConsumerView] = field(default_factory=dict)
    channels: dict[str, ChannelView] = field(default_factory=dict)
    accounts: dict[str, dict[str, AccountRow]] = field(
        default_factory=lambda: {"guarded": {}, "naive": {}, "partitioned": {}}
    )
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

    def scenario_step(self, caption: str | None, waiting: bool = False) -> None:
        """A caption said (`waiting` for Space in step mode), or with None, the step it shows resumed."""
        if self.scenario is not None:
            self.scenario.steps += [caption] if caption is not None else []
            self.scenario.waiting = waiting
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
        if (events := self.cluster.apply(state.nodes)) is not None:
            for event in events if self.phase == "running" else ():
                self.lab_event(event, self.now)
            self.mark("nodes")
        self.apply_members(state.members)

    def new_lab(self) -> None:
        """Attached to another lab: its processes are not the last one's (its data is, until read again)."""
        self.listeners.clear()
        self.consumers.clear()
        self.partitions = PartitionsView()
        self.selected = None
        self.mark(*SECTIONS)

    def learn_counters(self, entries: tuple[tuple[str, int, str, dict[str, int]], ...]) -> None:
        """The host's counts of listener processes this dashboard may not have seen (it attached later)."""
        for name, pid, mode, counts in entries:
            if name in self.listeners:
                self.listeners[name].counts.learn(name, pid, mode, Counts.from_json(counts))

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
                event = member_event(view, view.member, member, self.phase == "running")
                if event is not None:
                    self.lab_event(event, self.now)
                view.member = member
                changed = True
        if changed:
            self.mark("groups", "listeners")

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

    def apply_accounts(
        self,
        guarded: list[AccountRow],
        naive: list[AccountRow],
        partitioned: list[AccountRow] | None = None,
    ) -> None:
        rows = {
            "guarded": {row.user_id: row for row in guarded},
            "naive": {row.user_id: row for row in naive},
            "partitioned": {row.user_id: row for row in partitioned or ()},
        }
        if rows != self.accounts:
            self.accounts = rows
            self.mark("accounts", "status")

    def apply_partitions(self, seen: PartitionsSeen | None) -> None:
        """A poll of the partitions; a partition whose owner moved gets a timeline row, as a node's
        leadership does."""
        if self.partitions.apply(seen):
            self.mark("groups", "listeners", "accounts")
        for move in partition_moves(self):
            if self.phase == "running":
                self.lab_event(move, self.now)

    def apply_report(self, report: CheckReport) -> None:
        self.report, self.checking = report, False
        self.mark("accounts", "status")

    # -- reading, for the panes --------------------------------------------------------------------

    def ordered_listeners(self) -> list[ListenerView]:
        """Guarded listeners first, then naive, then partitioned ones; the order of the `1`-`9` keys."""
        order = {group.mode: index for index, group in enumerate(ALL_GROUPS)}
        return sorted(self.listeners.values(), key=lambda v: (order.get(v.mode, len(order)), len(v.name), v.name))

    def held_note(self, holder: ListenerView) -> HeldNote | None:
        """For a killed or paused listener holding events: when the server hands the first one on,
        or the delivery that took it over."""
        held = holder.in_flight
        if not held or not (holder.gone or holder.state == "paused"):
            return None
        taken_over = redelivered_to(self.timeline, self.listeners, holder, held[0])
        due = holder.redelivery_in(self.ack_wait_s, self.now)
        if taken_over is None and due is None:
            return None
        return HeldNote(due, taken_over)

    def counting_down(self) -> bool:
        """A card shows a redelivery countdown or a holding time, so it must be redrawn as time passes."""
        return any(listener.in_flight for listener in self.listeners.values())

    def group_members(self, group: str) -> list[ListenerView]:
        return [view for view in self.ordered_listeners() if view.group == group]

    def account_lines(self) -> list[AccountLine]:
        return account_lines(self)

    def published(self) -> int:
        """Events stored in the stream, on both channels."""
        return sum(channel.stats.messages for channel in self.channels.values())

    def verdict(self, mode: Mode) -> Totals | None:
        """The checker's totals for a group; None before the first check, or for a group it has no
        database of (naive, partitioned)."""
        if self.report is None:
            return None
        return {"guarded": self.report.guarded, "naive": self.report.naive, "partitioned": self.report.partitioned}.get(mode)

    def settling(self, group: str) -> bool:
        """The group still has events to deliver or to acknowledge: a non-clean verdict may resolve."""
        if group == PARTITIONED_GROUP.name:
            return bool(self.partitions.lag)
        consumer = self.consumers.get(group)
        return consumer is not None and (consumer.pending > 0 or consumer.ack_pending > 0)

