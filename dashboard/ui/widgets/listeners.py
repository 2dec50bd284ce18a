"""The listeners pane: a card per listener process, side by side, scrolling when there are many."""

from __future__ import annotations

from textual import events
from textual.containers import HorizontalScroll

from dashboard.ui.view import LabView
from dashboard.ui.widgets.listener_card import ListenerCard

CARD_MIN_WIDTH = 40


class ListenersPane(HorizontalScroll):
    """Keeps one `ListenerCard` per listener, in the order the `1`-`9` keys use.

    Cards share the width while each gets at least `CARD_MIN_WIDTH` columns; past that the pane
    scrolls sideways (fractional widths would size every card to the whole pane in a scroller).
    """

    DEFAULT_CSS = """
    ListenersPane {
        scrollbar-size-horizontal: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cards: dict[str, ListenerCard] = {}

    def show(self, view: LabView) -> None:
        ordered = view.ordered_listeners()
        if [listener.name for listener in ordered] != list(self._cards):
            # A listener was added: lay the cards out again in key order (rare, so no diffing).
            self.remove_children()
            self._cards = {listener.name: ListenerCard(listener.name) for listener in ordered}
            self.mount_all(self._cards.values())
            self.fit_cards()
        for index, listener in enumerate(ordered, 1):
            self._cards[listener.name].show(view, listener, index)

    def on_resize(self, _: events.Resize) -> None:
        self.fit_cards()

    def fit_cards(self) -> None:
        if not self._cards or not self.size.width:
            return
        width = max(CARD_MIN_WIDTH, self.size.width // len(self._cards))
        for card in self._cards.values():
            card.styles.width = width
        self.set_class(width * len(self._cards) > self.size.width, "-overflowing")

    @staticmethod
    def counting_down(view: LabView) -> bool:
        """A card shows a redelivery countdown, so it must be redrawn as time passes."""
        return any(
            listener.in_flight and (listener.gone or listener.state == "paused") for listener in view.listeners.values()
        )

    def reveal(self, name: str) -> None:
        card = self._cards.get(name)
        if card is not None and card.is_mounted:
            self.scroll_to_widget(card, animate=False)
