"""Helpers for the dashboard tests: wait on the running app with a deadline, read what a pane shows."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the app run until `predicate` holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.05)


def shown_text(widget: Static, width: int = 120) -> str:
    """The text a Static pane shows, rendered as the terminal would."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()
