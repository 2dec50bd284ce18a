"""A scrollable list of rows drawn with Textual's line API, each row's strip cached until it changes.

Only the rows on screen are rendered, and a row is rendered again only when its key changes, so a pane
of hundreds of rows costs little however often the lab updates it. Subclasses say how a row looks
(`render_row`) and what makes it look different (`row_key`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = TypeVar("Row")


class CachedLines(ScrollView, Generic[Row]):
    DEFAULT_CSS = """
    CachedLines {
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: Sequence[Row] = []
        self._strips: dict[Hashable, Strip] = {}

    def row_key(self, row: Row) -> Hashable:
        raise NotImplementedError

    def render_row(self, row: Row) -> Text:
        raise NotImplementedError

    def set_rows(self, rows: Sequence[Row], width: int) -> None:
        """Show `rows`, `width` cells wide; cached strips of rows that are gone are dropped."""
        self.rows = rows
        keys = {self.row_key(row) for row in rows}
        self._strips = {key: strip for key, strip in self._strips.items() if key in keys}
        self.virtual_size = Size(width, len(rows))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        row = self.rows[index]
        key = self.row_key(row)
        strip = self._strips.get(key)
        if strip is None:
            text = self.render_row(row)
            strip = Strip(list(text.render(self.app.console)), text.cell_len).apply_style(self.rich_style)
            self._strips[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def shown_text(self) -> str:
        """What the rows on screen read, for tests and the benchmark."""
        return "\n".join(self.render_line(y).text for y in range(self.size.height))
