"""The caption bar: one line saying what is happening (starting, a scenario's step, a failure)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dashboard.ui.view import LabView

KIND_STYLES = {"info": "", "scenario": "bold", "warning": "bold yellow", "error": "bold red"}


class CaptionBar(Static):
    def show(self, view: LabView) -> None:
        self.set_class(view.caption_kind == "scenario", "-scenario")
        text = Text(view.caption, KIND_STYLES.get(view.caption_kind, ""), no_wrap=True, overflow="ellipsis")
        self.update(text, layout=False)
