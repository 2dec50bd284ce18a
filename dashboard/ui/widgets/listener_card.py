"""One listener's card: what is its own (process, state, what it holds and since when, its counters,
its last outcome). The consumer's figures belong to the queue group and are shown once, above its cards.

A card is one line (number, name, state, what it holds or did last); the selected card, and every card
on a tall terminal with at most three listeners, adds a second line with its pid and counters.
"""

from __future__ import annotations

import os

from rich.text import Text
from textual.widgets import Static

from dashboard.ui.partitions_view import partition_rows
from dashboard.ui.view import LabView, ListenerView
from dashboard.ui.widgets.styles import OUTCOME_MARKS, outcome_style, state_style
from listeners.groups import PARTITIONED_GROUP
from listeners.status import DeliveryReport

# The listener's own counters, in the words the help legend explains; conflicts and parked events are
# rare and always wrong, so they appear (in red) only when there are any.
COUNTERS = (
    ("applied", "applied"),
    ("rejected", "rejected"),
    ("duplicates", "skipped duplicates"),
    ("deferred", "deferred"),
    ("redelivered", "redeliveries"),
    ("poison", "poison"),
)
ALARMS = (("conflicts", "conflicts"), ("parked", "parked"))
# Slower than this per event is no pace but a hold: a scenario slows a listener so it sits on an event.
HOLDING_MS = 60_000


def unaccounted(view: LabView, group: str) -> int:
    """Events the server counts as delivered and unacknowledged that no member's last report holds:
    a listener paused or killed between a fetch and its next status holds them."""
    if group == PARTITIONED_GROUP.name:
        seen = view.partitions.seen
        unacknowledged = sum(state.ack_pending for state in seen.states) if seen is not None else 0
    else:
        consumer = view.consumers.get(group)
        unacknowledged = consumer.ack_pending if consumer is not None else 0
    return max(0, unacknowledged - sum(member.in_flight_count for member in view.group_members(group)))


def early(view: LabView, held: DeliveryReport) -> str:
    """`waits for #2` when a held event came before its predecessor was processed (guarded database).
    Not for a partitioned listener: it gets a user's events in order, and by rows read up to a second
    ago most of what it holds would look early."""
    if held.user_id is None:
        return ""
    row = view.accounts["guarded"].get(held.user_id)
    last = row.last_number if row is not None else 0
    return f"waits for #{last + 1}" if held.number > last + 1 else ""


def head_line(view: LabView, listener: ListenerView, number: int) -> Text:
    """`1 A  running  holds jim #2 deposit $40 ×1 for 1.2s`, or its last outcome when it holds nothing."""
    line = Text(no_wrap=True, overflow="ellipsis")
    selected = listener.name == view.selected
    line.append(f"{number if number <= 9 else '·'}", "bold reverse" if selected else "bold")
    line.append(f" {listener.name:<4}", "bold")
    state = listener.state
    member = listener.member
    if state == "crashed" and member is not None and member.exit_code == os.EX_SOFTWARE:
        # The crash the user armed with c: it did what it was told, nothing is wrong.
        line.append(" crashed as asked ", "bold yellow")
    elif state == "crashed" and member is not None and member.exit_code is not None:
        line.append(f" {state} (exit {member.exit_code}) ", state_style(state))
    else:
        line.append(f" {state:<12}", state_style(state))
    stopped = listener.gone or state == "paused"
    if listener.slow_ms >= HOLDING_MS and not stopped:
        line.append("slowed to hold what it fetches ", "yellow")  # a scenario makes it sit on an event
    elif listener.slow_ms and not stopped:
        line.append(f"slow {listener.slow_ms / 1000:g}s/event ", "yellow")
    if listener.crash_armed:
        line.append(f"crash {listener.crash_armed} ", "bold red")
    line.append_text(now_text(view, listener))
    return line


def now_text(view: LabView, listener: ListenerView) -> Text:
    """What the listener holds now and since when, what becomes of it when the listener is stopped,
    or (holding nothing) why it ended or what it did last."""
    text = Text()
    member = listener.member
    held = listener.in_flight
    stopped = listener.gone or listener.state == "paused"
    if held:
        first = held[0]
        text.append("held " if listener.gone else "holds ", "yellow")
        text.append(first.describe())  # from the network: a Text, never markup
        if first.delivery_count > 1:
            text.append(f" ×{first.delivery_count}", "bold yellow")
        waits = early(view, first) if listener.mode == "guarded" else ""
        if waits:
            text.append(f" (early: {waits})", "yellow")
        more = listener.in_flight_count - 1
        if more > 0:
            text.append(f" +{more} more", "dim")
        status = listener.status
        if status is not None and status.in_flight_since is not None and not stopped:
            text.append(f" for {max(0.0, view.now - status.in_flight_since):.1f}s", "dim")
        note = view.held_note(listener)
        if note is not None:
            text.append(
                f" · {note.long()}", outcome_style(note.taken_over.outcome) if note.taken_over else "bold yellow"
            )
        return text
    if listener.state == "paused":
        unaccounted_now = unaccounted(view, listener.group)
        if unaccounted_now:
            text.append(
                f"stopped before it reported what it holds; the server counts {unaccounted_now} unacknowledged",
                "bold yellow",
            )
        else:
            text.append("stopped holding nothing: nothing to redeliver", "yellow")
        return text
    if listener.state == "crashed" and member is not None and member.exit_code == os.EX_SOFTWARE:
        text.append("after a commit, before its ack: that event comes back to the others", "yellow")
        return text
    if listener.state == "crashed" and member is not None and member.reason:
        text.append(f"✗ {member.reason}", "red")  # its own last words: a Text, never markup
        return text
    restarted = member is not None and member.restarts > 0
    return last_outcome(listener.last_event if listener.fresh or listener.gone else None, restarted)


def last_outcome(last: DeliveryReport | None, restarted: bool = False) -> Text:
    text = Text()
    if last is None:
        text.append("idle since its restart" if restarted else "idle, nothing processed yet", "dim")
        return text
    outcome = last.outcome or "?"
    text.append("last ", "dim")
    text.append(f"{OUTCOME_MARKS.get(outcome, '?')} ", outcome_style(outcome))
    text.append(last.describe())
    text.append(f" {outcome}", outcome_style(outcome))
    if last.delivery_count > 1:
        text.append(f" ×{last.delivery_count}", "bold yellow")
    return text


def owned(view: LabView, listener: ListenerView) -> Text:
    """`owns p0 p2 · ` for a partitioned listener (`owns none · ` when it only stands by)."""
    if listener.mode != "partitioned" or view.partitions.seen is None or listener.gone:
        return Text()
    mine = [row.label for row in partition_rows(view) if row.owner == listener.name]
    text = Text("owns ", "dim")
    text.append(" ".join(mine) if mine else "none", "bold" if mine else "dim")
    text.append(" · ", "dim")
    return text


def detail_line(view: LabView, listener: ListenerView) -> Text:
    """`  pid 4101 · applied 3 · rejected 0 · skipped duplicates 0 · …`: its own counters, every
    process it has been summed, so they only go up; a partitioned listener's partitions first."""
    line = Text("    ", no_wrap=True, overflow="ellipsis")
    line.append(f"pid {listener.pid or '-'} · ", "dim")
    line.append_text(owned(view, listener))
    line.append("over its restarts:", "dim")
    total = listener.total
    for counter, label in ALARMS:
        if total(counter):
            line.append(f" {label} {total(counter)} ·", "bold red")
    for index, (counter, label) in enumerate(COUNTERS):
        value = total(counter)
        line.append(f"{' ·' if index else ''} {label} ", "dim")
        line.append(str(value), "bold" if value else "dim")
    return line


class ListenerCard(Static):
    """A listener, numbered for the `1`-`9` keys and coloured by state: one line, or two with details."""

    DEFAULT_CSS = """
    ListenerCard {
        height: auto;
        padding: 0 0 0 1;
        /* A card mounted since the last layout has no width yet to cut its lines to. */
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ListenerCard.-selected {
        background: $boost;
    }
    ListenerCard.-gone {
        color: $text-muted;
    }
    """

    def __init__(self, name: str) -> None:
        super().__init__(classes="listener-card")
        self.listener_name = name
        self._shape = (0, 0)

    def show(self, view: LabView, listener: ListenerView, number: int, detailed: bool) -> None:
        self.set_class(listener.name == view.selected, "-selected")
        self.set_class(listener.gone, "-gone")
        self.set_class(listener.state == "paused", "-paused")
        lines = [head_line(view, listener, number)]
        if detailed:
            lines.append(detail_line(view, listener))
        width = self.content_size.width
        if width:  # cut here: Textual wraps a renderable whatever its no_wrap says
            for line in lines:
                line.truncate(width, overflow="ellipsis")
        text = Text("\n").join(lines)
        # Lay out again only when the card grows or shrinks by a line, or the pane's width changed.
        shape = (len(lines), width)
        self.update(text, layout=shape != self._shape)
        self._shape = shape
