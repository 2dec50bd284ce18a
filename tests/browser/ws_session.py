"""A textual-serve client without a browser: the page's side of the websocket protocol, over aiohttp.

textual-serve's page connects to `/ws?width=W&height=H`, sends `["resize", {"width": W, "height": H}]`,
then `["stdin", TEXT]` for what is typed and `["focus"]` / `["blur"]` as the terminal gains or loses
focus; it receives the app's terminal output as binary frames and `["pong", ...]` and a few other JSON
text frames. This session does the same and feeds the binary frames into a TerminalScreen, so a test
reads the same screen text as with the browser (page.py), in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from terminal_screen import TerminalScreen, wait_for_screen

# What xterm.js sends for the keys a test presses, by Playwright's key names; one character is itself.
KEYS = {
    "Enter": "\r",
    "Space": " ",
    "Escape": "\x1b",
    "Tab": "\t",
    "Backspace": "\x7f",
    "ArrowUp": "\x1b[A",
    "ArrowDown": "\x1b[B",
    "ArrowRight": "\x1b[C",
    "ArrowLeft": "\x1b[D",
}


def key_text(key: str) -> str:
    """The stdin text for a key: a name from KEYS, or a single character as it is."""
    if key in KEYS:
        return KEYS[key]
    if len(key) == 1:
        return key
    raise ValueError(f"unknown key {key!r}: use one character or one of {', '.join(KEYS)}")


def websocket_url(page_url: str, columns: int, lines: int) -> str:
    """The page's websocket address for a page served at `page_url` (http://HOST:PORT/)."""
    parts = urlsplit(page_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws?width={columns}&height={lines}"


class WsSession:
    """One textual-serve session (one app process) driven over its websocket."""

    def __init__(self, websocket: aiohttp.ClientWebSocketResponse, screen: TerminalScreen) -> None:
        self.websocket = websocket
        self.screen = screen
        self.texts: list[str] = []  # the JSON text frames received (pongs, open_url...)
        self.closed: str | None = None  # why the websocket ended, once it has
        self.focused = False  # whether the app was told its terminal has focus
        self._reader = asyncio.create_task(self._read(), name="ws-session-reader")

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                if message.type == aiohttp.WSMsgType.BINARY:
                    self.screen.feed(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self.texts.append(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    self.closed = f"the websocket failed: {self.websocket.exception()!r}"
                    return
        finally:
            if self.closed is None:
                self.closed = f"the server closed the websocket (code {self.websocket.close_code})"

    async def send(self, *envelope: object) -> None:
        """Send one client message, as the page does: a JSON list."""
        message = json.dumps(list(envelope))
        await self.websocket.send_str(message)
        self.screen.client_sent(message)

    async def resize(self, columns: int, lines: int) -> None:
        """Ask the app for a terminal of this size, as the page does when its window changes."""
        await self.send("resize", {"width": columns, "height": lines})

    async def focus(self) -> None:
        """Tell the app its terminal has focus, as the page does when clicked; the app shows its footer
        of keys only while focused. Not sent on connecting: the app starts blurred, after its first
        messages, and would take a focus sent that early back."""
        await self.send("focus")
        self.focused = True

    async def type(self, text: str) -> None:
        """Send text to the app's standard input as typed."""
        await self.send("stdin", text)

    async def press(self, key: str) -> None:
        """Focus the terminal if it has not been, then press one key: "x", "Enter", "Space", "Escape"...
        (Playwright's names, see KEYS), as the page would after a click."""
        text = key_text(key)
        if not self.focused:
            await self.focus()
        await self.type(text)

    async def wait_for_text(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until the screen shows `pattern` (a plain string, or a regex searched in the screen's
        text, lines joined with newlines); AssertionError with the last screen at the deadline."""
        return await wait_for_screen(self.screen, pattern, timeout, lambda: self.closed)

    async def close(self) -> None:
        await self.websocket.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def open_session(
    page_url: str, columns: int = 150, lines: int = 45, *, connect_timeout: float = 30.0
) -> AsyncIterator[WsSession]:
    """Connect to the textual-serve page at `page_url` as a client of `columns` x `lines` cells.

    Sends the resize the page sends on opening. The websocket is closed on the way out, passed or
    failed, which tells the server to end the app.
    """
    timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout)) as http:
        websocket = await http.ws_connect(websocket_url(page_url, columns, lines), timeout=timeout, autoping=True)
        session = WsSession(websocket, TerminalScreen(columns, lines))
        try:
            await session.resize(columns, lines)
            yield session
        finally:
            await session.close()
