"""The terminal a textual-serve page was sent, emulated with pyte so a test can read its text.

textual-serve's page draws the dashboard with xterm.js on a canvas: the page has no text to read.
What it does have is the stream it was sent. Its websocket carries the app's terminal output as binary
frames (UTF-8 text with escape sequences: truecolor SGR, cursor moves, synchronized output) and the
page's own messages as JSON text frames, among them `["resize", {"width": W, "height": H}]`. Feeding
the one into a pyte screen of the size the other asked for gives the text the page shows.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Protocol

import pyte

# How often a wait looks at the screen again.
POLL_S = 0.05

# xterm.js starts at 80x24 until the page has fitted the terminal to its window; so does textual-serve.
DEFAULT_COLUMNS = 80
DEFAULT_LINES = 24


def resize_request(message: str | bytes) -> tuple[int, int] | None:
    """(columns, lines) if `message` is a textual-serve client message asking for a terminal size."""
    if isinstance(message, bytes):
        return None
    try:
        envelope = json.loads(message)
    except ValueError:
        return None
    if not (isinstance(envelope, list) and len(envelope) == 2 and envelope[0] == "resize"):
        return None
    size = envelope[1]
    if not isinstance(size, dict):
        return None
    width, height = size.get("width"), size.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        return None
    return width, height


class TerminalScreen:
    """A pyte screen fed the bytes a textual-serve client received.

    pyte keeps one screen buffer: the app's switch to the alternate screen is ignored, which is
    harmless since the app redraws every cell of the screen it shows. Synchronized-output markers
    (`CSI ? 2026 h/l`) and the app's queries (`CSI ? 2026 $ p`) are modes and requests pyte ignores;
    truecolor SGR is parsed into colours. A UTF-8 character split across two frames is decoded whole.
    """

    def __init__(self, columns: int = DEFAULT_COLUMNS, lines: int = DEFAULT_LINES) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.received = 0  # bytes fed so far: tells a test whether the app sent anything at all

    @property
    def size(self) -> tuple[int, int]:
        """(columns, lines)."""
        return self.screen.columns, self.screen.lines

    def feed(self, data: bytes) -> None:
        """Apply terminal output as the client received it."""
        self.received += len(data)
        self.stream.feed(data)

    def resize(self, columns: int, lines: int) -> None:
        """Take the size the client asked the app for; the app redraws at that size."""
        if (columns, lines) != self.size:
            self.screen.resize(lines=lines, columns=columns)

    def client_sent(self, message: str | bytes) -> None:
        """Follow a message the client sent to the server: a resize request changes the screen's size."""
        size = resize_request(message)
        if size is not None:
            self.resize(*size)

    def text(self) -> str:
        """The screen's lines, trailing blanks removed, joined with newlines."""
        return "\n".join(line.rstrip() for line in self.screen.display)


def as_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """A plain string is looked for as it is; a compiled pattern is searched with its own flags."""
    return pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))


async def wait_for_screen(
    screen: TerminalScreen,
    pattern: str | re.Pattern[str],
    timeout: float,
    trouble: Callable[[], str | None] = lambda: None,
) -> re.Match[str]:
    """Poll `screen` until `pattern` is found in its text, and return the match.

    AssertionError at the deadline, or as soon as `trouble()` names a reason the text can no longer
    come (the websocket closed); the message holds the last screen text.
    """
    wanted = as_pattern(pattern)
    described = pattern if isinstance(pattern, str) else pattern.pattern
    deadline = time.monotonic() + timeout
    while True:
        text = screen.text()
        found = wanted.search(text)
        if found is not None:
            return found
        problem = trouble()
        if problem is None and time.monotonic() > deadline:
            problem = f"timed out after {timeout:g} s"
        if problem is not None:
            columns, lines = screen.size
            raise AssertionError(
                f"{problem} waiting for {described!r} on the terminal"
                f" ({columns}x{lines}, {screen.received} bytes received); the screen shows:\n{text}"
            )
        await asyncio.sleep(POLL_S)


class Terminal(Protocol):
    """What a test drives: the browser page (page.py) and the bare websocket session (ws_session.py)."""

    screen: TerminalScreen

    async def wait_for_text(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]: ...

    async def press(self, key: str) -> None: ...
