"""The queue groups pane: each group's durable consumer, once, and a card per listener sharing it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dashboard.ui.view import ConsumerView, LabView
from dashboard.ui.widgets.listener_card import ListenerCard
from listeners.groups import GROUPS, QueueGroup


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


class QueueGroupsPane(Vertical):
    """`account-service` and `account-service-naive`: the consumer's state, then the members' cards."""

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
        self._header_lines = 0

    def compose(self) -> ComposeResult:
        for group in GROUPS:
            yield Static(classes="group-header", id=f"header-{group.mode}")

    def on_mount(self) -> None:
        self.border_title = "Queue groups and their listeners"
        self.border_subtitle = "1-9 selects (its counters show) · k p r c s act on it"

    def show(self, view: LabView) -> None:
        numbers = {listener.name: index for index, listener in enumerate(view.ordered_listeners(), 1)}
        layout = [(group.name, tuple(member.name for member in view.group_members(group.name))) for group in GROUPS]
        if layout != self._layout:
            self._rebuild(view, layout)
        tall = self.screen.has_class("-tall")
        relayout = (2 if tall else 1) != self._header_lines
        self._header_lines = 2 if tall else 1
        width = max(1, self.content_size.width - 2)
        for group in GROUPS:
            members = view.group_members(group.name)
            header = self.query_one(f"#header-{group.mode}", Static)
            lines = group_header(group, view.consumers.get(group.name), len(members), short=not tall)
            for line in lines:
                line.truncate(width, overflow="ellipsis")
            header.update(Text("\n").join(lines), layout=relayout)
            for listener in members:
                detailed = tall or listener.name == view.selected
                self._cards[listener.name].show(view, listener, numbers[listener.name], detailed)

    def _rebuild(self, view: LabView, layout: list[tuple[str, tuple[str, ...]]]) -> None:
        """A listener was added: mount the cards again under their groups (rare, so no diffing)."""
        for card in self._cards.values():
            card.remove()
        self._cards = {}
        for group, names in layout:
            mode = next(g.mode for g in GROUPS if g.name == group)
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
