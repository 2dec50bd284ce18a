"""The queue groups pane: each group's durable consumer, once, and a card per listener sharing it; for
the partitioned group, each partition's owner and lag instead, and how often its number guard acted."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dashboard.ui.partitions_view import PartitionRow, guard_acted, has_partitioned, partition_rows
from dashboard.ui.view import ConsumerView, LabView
from dashboard.ui.widgets.listener_card import ListenerCard
from listeners.groups import ALL_GROUPS, PARTITIONED_GROUP, QueueGroup


def group_header(group: QueueGroup, consumer: ConsumerView | None, members: int, short: bool = False) -> list[Text]:
    """`account-service · guarded · 2 listeners share one consumer`, then the consumer's state as `nats
    consumer info` gives it: the server's view, shared by every member. One line when `short`."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(group.name, "bold")
    if short:
        text.append(f" ({group.mode}): ", "dim")
    else:
        sharing = f"{members} listeners share" if members != 1 else "1 listener uses"
        text.append(f" · {group.mode} · {sharing} one consumer", "dim")
    stats = Text(no_wrap=True, overflow="ellipsis")
    stats.append("" if short else "  ")
    if consumer is None:
        stats.append("waiting for the consumer's state…", "dim")
        return [text + stats] if short else [text, stats]
    figures = (
        ("ack pending", consumer.ack_pending, "yellow"),
        ("pending", consumer.pending, "yellow"),
        ("redelivering", consumer.redelivered, "yellow"),
    )
    for index, (label, value, busy) in enumerate(figures):
        if index:
            stats.append(" · ", "dim")
        stats.append(f"{label} ", "dim")
        stats.append(str(value), f"bold {busy}" if value and busy else "bold" if value else "dim")
    # Consumer sequence (deliveries, redeliveries included), then the stream sequence it was at.
    for label, consumer_seq, stream_seq in (
        ("delivered", consumer.delivered_consumer_seq, consumer.delivered_stream_seq),
        ("ack floor", consumer.ack_floor_consumer_seq, consumer.ack_floor_stream_seq),
    ):
        stats.append(f" · {label} ", "dim")
        stats.append(str(consumer_seq), "bold" if consumer_seq else "dim")
        stats.append(f" (stream {stream_seq})", "dim")
    stats.append(" · waiting pulls ", "dim")
    stats.append(str(consumer.waiting), "dim")
    return [text + stats] if short else [text, stats]


def partition_item(row: PartitionRow, short: bool) -> Text:
    """`p0 → P1 lag 0`: the partition, its owner (or why it has none) and its lag; a short one,
    `p0→P1`, leaves out a lag of 0."""
    item = Text(no_wrap=True)
    item.append(row.label, "bold")
    item.append("→" if short else " → ", "dim")
    if row.waiting_for_owner:
        style = "bold yellow"
    elif row.owner is not None:
        style = "bold" if row.owner_pulls else "yellow"
    else:
        style = "dim"
    item.append(row.owner_words(short), style)
    if row.lag or not short:
        item.append(" lag ", "dim")
        item.append(str(row.lag), "bold yellow" if row.lag else "dim")
    return item


def guard_text(view: LabView, short: bool = False) -> Text:
    """`guard acted 0× since start`: over every process of the group since the lab started (a short
    header, one line under 34 rows, has no room for `since start`; ? says it)."""
    acted = guard_acted(view)
    text = Text(no_wrap=True)
    text.append("guard acted ", "dim")
    text.append(f"{acted}×", "yellow" if acted else "dim")
    if not short:
        text.append(" since start", "dim")
    return text


def pack(items: list[Text], width: int, indent: str) -> list[Text]:
    """The items on as few lines of `width` as they fit, ` · ` between them."""
    lines: list[Text] = []
    line = Text(indent, no_wrap=True, overflow="ellipsis")
    for item in items:
        if line.cell_len > len(indent) and line.cell_len + 3 + item.cell_len > width:
            lines.append(line)
            line = Text(indent, no_wrap=True, overflow="ellipsis")
        if line.cell_len > len(indent):
            line.append(" · ", "dim")
        line.append_text(item)
    return [*lines, line]


def partitioned_header(view: LabView, members: int, width: int, short: bool = False) -> list[Text]:
    """`account-service-partitioned · partitioned · 2 listeners, users split into 3 partitions…`, then
    `p0 → P1 lag 0 · p1 → P2 lag 0 · p2 → P1 lag 0 · guard acted 0× since start` on as many lines as it takes; one line
    when `short`."""
    group, count = PARTITIONED_GROUP, view.partitions.count
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append(group.name, "bold")
    if not short:
        listeners = f"{members} listeners" if members != 1 else "1 listener"
        split = f", users split into {count} partitions, one owner each" if count is not None else ""
        title.append(f" · {group.mode} · {listeners}{split}", "dim")
    rows = partition_rows(view)
    if not rows:
        waiting = Text("waiting for the partitions' state…", "dim")
        return [title + Text(": ", "dim") + waiting] if short else [title, Text("  ") + waiting]
    items = [partition_item(row, short) for row in rows]
    seen = view.partitions.seen
    if seen is not None and seen.source_lag:
        items.append(Text(f"{seen.source_lag} still to copy in", "yellow"))
    items.append(guard_text(view, short))
    if short:
        return [title + Text(": ", "dim") + pack(items, 10_000, "")[0]]
    return [title, *pack(items, width, "  ")]


# With more listeners than this, only the selected card shows its pid and counters, also on a tall
# terminal: five detailed cards left the account pane no rows at 160x48.
DETAILED_UP_TO = 3


class QueueGroupsPane(Vertical):
    """Each queue group (the partitioned one when the lab has it): the consumer's state, or the partitions,
    then the members' cards."""

    DEFAULT_CSS = """
    QueueGroupsPane {
        height: auto;
    }
    QueueGroupsPane .group-header {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cards: dict[str, ListenerCard] = {}
        self._layout: list[tuple[str, tuple[str, ...]]] = []
        self._header_lines: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        for group in ALL_GROUPS:
            yield Static(classes="group-header", id=f"header-{group.mode}")

    def on_mount(self) -> None:
        self.border_title = "Queue groups and their listeners"
        self.border_subtitle = "1-9 selects (its counters show) · k p r c s act on it"

    def show(self, view: LabView) -> None:
        numbers = {listener.name: index for index, listener in enumerate(view.ordered_listeners(), 1)}
        groups = [group for group in ALL_GROUPS if group is not PARTITIONED_GROUP or has_partitioned(view)]
        layout = [(group.name, tuple(member.name for member in view.group_members(group.name))) for group in groups]
        if layout != self._layout:
            self._rebuild(view, layout)
        tall = self.screen.has_class("-tall")
        width = max(1, self.content_size.width - 2)
        for group in ALL_GROUPS:
            members = view.group_members(group.name)
            header = self.query_one(f"#header-{group.mode}", Static)
            header.display = group in groups
            if group not in groups:
                continue
            if group is PARTITIONED_GROUP:
                lines = partitioned_header(view, len(members), width, short=not tall)
            else:
                lines = group_header(group, view.consumers.get(group.name), len(members), short=not tall)
            for line in lines:
                line.truncate(width, overflow="ellipsis")
            # Lay out again only when the header grows or shrinks by a line.
            relayout = self._header_lines.get(group.mode) != len(lines)
            self._header_lines[group.mode] = len(lines)
            header.update(Text("\n").join(lines), layout=relayout)
            for listener in members:
                # Every card's pid and counters only while they leave the panes below their rows.
                detailed = (tall and len(numbers) <= DETAILED_UP_TO) or listener.name == view.selected
                self._cards[listener.name].show(view, listener, numbers[listener.name], detailed)

    def _rebuild(self, view: LabView, layout: list[tuple[str, tuple[str, ...]]]) -> None:
        """A listener was added: mount the cards again under their groups (rare, so no diffing)."""
        for card in self._cards.values():
            card.remove()
        self._cards = {}
        for group, names in layout:
            mode = next(g.mode for g in ALL_GROUPS if g.name == group)
            header = self.query_one(f"#header-{mode}", Static)
            cards = [ListenerCard(name) for name in names]
            self._cards.update({card.listener_name: card for card in cards})
            if cards:
                self.mount_all(cards, after=header)
        self._layout = layout

    def reveal(self, name: str) -> None:
        card = self._cards.get(name)
        if card is not None and card.is_mounted:
            card.scroll_visible(animate=False)
