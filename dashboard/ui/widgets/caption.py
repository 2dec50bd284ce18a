"""The caption bar: what is happening, and while a scenario runs, the log of its steps.

A scenario's captions stay on screen as numbered steps (the newest last), so a step said a second ago
is still there to read; in step mode the bar says that Space runs the step it shows. When the scenario
ends, the steps give way to one closing line: what it showed. `l` opens the whole log again.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from dashboard.ui.view import LabView, ScenarioLog

KIND_STYLES = {"info": "", "scenario": "bold", "lesson": "bold", "warning": "bold yellow", "error": "bold red"}
# Lines the log may take: a tall terminal shows every step of a scenario, a short one the last ones.
TALL_LINES = 9
SHORT_LINES = 3


def step_lines(scenario: ScenarioLog, limit: int, width: int) -> list[Text]:
    """The title, then as many of the newest steps as fit in `limit` lines; earlier ones are counted."""
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append(f"Scenario {scenario.name}", "bold")
    title.append(f" · {scenario.summary}", "dim")
    lines: list[Text] = []
    steps = scenario.steps
    for number, caption in enumerate(steps, 1):
        current = number == len(steps)
        line = Text(no_wrap=not current, overflow="ellipsis")
        line.append(f"{'▶' if current else '✓'} {number:>2} ", "bold cyan" if current else "dim")
        line.append(caption, "bold" if current else "dim")
        lines.append(line)
    hint = Text(no_wrap=True, overflow="ellipsis")
    if scenario.waiting:
        hint.append(" Space", "bold reverse")
        hint.append(" goes on · ", "")
        hint.append("Enter", "bold reverse")
        hint.append(" runs the rest · ", "")
        hint.append("l", "bold reverse")
        hint.append(" every step · the lab runs on meanwhile (redeliveries come by themselves)", "dim")
    elif not steps:
        hint.append(" starting…", "dim")
    tail = [hint] if hint.plain else []
    # The current step may wrap (up to two lines); the earlier ones take one line each.
    current = lines[-1:]
    current_height = min(2, -(-current[0].cell_len // width)) if current else 0
    if current:
        current[0].no_wrap, current[0].overflow = False, "ellipsis"
    room = max(0, limit - 1 - len(tail) - current_height)
    earlier = lines[:-1]
    if len(earlier) > room:
        keep = max(0, room - 1)
        hidden = len(earlier) - keep
        note = Text(f"  … {hidden} earlier step{'s' if hidden != 1 else ''} (l shows the whole log)", "dim")
        earlier = ([note] if room else []) + (earlier[-keep:] if keep else [])
    return [title, *earlier, *current, *tail]


class CaptionBar(Static):
    """One line of what is happening, or the running scenario's steps."""

    def show(self, view: LabView) -> None:
        scenario = view.scenario
        running = scenario is not None and scenario.running
        self.set_class(running or view.caption_kind in ("scenario", "lesson"), "-scenario")
        if scenario is not None and running:
            limit = TALL_LINES if self.screen.has_class("-tall") else SHORT_LINES
            self.update(Group(*step_lines(scenario, limit, max(10, self.size.width - 2))))
            return
        text = Text(view.caption, KIND_STYLES.get(view.caption_kind, ""), overflow="ellipsis")
        if view.caption_kind == "lesson":
            text.append("  (l: the whole log)", "dim")
        # A tall terminal has room for the whole lesson; a short one keeps a line for it, so the
        # panes below keep theirs (l shows it whole).
        wrap = view.caption_kind in ("lesson", "error") and self.screen.has_class("-tall")
        if not wrap:
            text.truncate(max(10, self.size.width - 2), overflow="ellipsis")
        self.update(text)
