"""The dashboard's web page in headless Chromium, driven by Playwright, read through its websocket.

textual-serve's page draws the terminal with xterm.js on a canvas, so the page's DOM holds no text to
wait for. This page listens to the page's own websocket instead: the binary frames it receives go into
a TerminalScreen (terminal_screen.py), sized from the websocket's URL and each `["resize", ...]` the page
sends. Keys go in as a person's would: the terminal is focused, then Playwright's keyboard types.

The browser is the system's Chromium (never a downloaded one), with a temporary profile, and every
request that is not for a loopback address is aborted: the page itself asks a web font service for
its font, which must not leave this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Route, WebSocket, async_playwright
from terminal_screen import POLL_S, TerminalScreen, wait_for_screen

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing resolves but the loopback names: whatever the browser itself would fetch (not only the
    # page's requests, which are also aborted below) cannot leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
)
VIEWPORT = {"width": 1400, "height": 900}
# How long the page may take to focus its terminal and say so on the websocket.
FOCUS_S = 10.0


def chromium_path() -> str | None:
    """The system's Chromium (Debian's package installs /usr/bin/chromium), None where there is none."""
    return shutil.which("chromium")


def require_chromium() -> str:
    """Chromium's path; without one, skip the test, or fail it in CI (CI=true), where it must run."""
    path = chromium_path()
    if path is None:
        reason = "no chromium on PATH: the browser test needs the system's Chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the browser test", pytrace=False)
        pytest.skip(reason)
    return path


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine: localhost or an address in 127.0.0.0/8 or ::1."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def size_in(url: str) -> tuple[int, int] | None:
    """(columns, lines) from a textual-serve websocket URL's `width` and `height`, if it has both."""
    query = parse_qs(urlsplit(url).query)
    try:
        return int(query["width"][0]), int(query["height"][0])
    except (KeyError, ValueError):
        return None


class TerminalPage:
    """The open page: its terminal's screen as sent, keys, screenshots."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.context = context
        self.page = page
        self.screen = TerminalScreen()
        self.sent: list[str] = []  # the JSON text frames the page sent (resize, stdin, focus, ping...)
        self.blocked: list[str] = []  # the requests for other hosts that were aborted
        self.websocket: WebSocket | None = None
        self.closed: str | None = None  # why the terminal's websocket ended, once it has
        self.page_errors: list[str] = []
        page.on("websocket", self._websocket_opened)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _websocket_opened(self, websocket: WebSocket) -> None:
        if urlsplit(websocket.url).path != "/ws":
            return
        self.websocket = websocket
        size = size_in(websocket.url)
        if size is not None:
            self.screen.resize(*size)
        websocket.on("framereceived", self._received)
        websocket.on("framesent", self._sent)
        websocket.on("close", lambda _ws: self._ended("the page's websocket closed"))
        websocket.on("socketerror", lambda error: self._ended(f"the page's websocket failed: {error}"))

    def _received(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.screen.feed(payload)

    def _sent(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.sent.append(payload)
        self.screen.client_sent(payload)

    def _ended(self, why: str) -> None:
        if self.closed is None:
            self.closed = why

    async def _route(self, route: Route) -> None:
        if is_loopback(route.request.url):
            await route.continue_()
        else:
            self.blocked.append(route.request.url)
            await route.abort("blockedbyclient")

    def _trouble(self) -> str | None:
        if self.closed is not None:
            return self.closed
        if self.page_errors:
            return f"the page failed: {self.page_errors[-1]}"
        return None

    async def wait_for_text(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until the terminal shows `pattern` (a plain string, or a regex searched in the screen's
        text, lines joined with newlines); AssertionError with the last screen at the deadline."""
        return await wait_for_screen(self.screen, pattern, timeout, self._trouble)

    def focused(self) -> bool:
        """Whether the page last told the app its terminal has focus (not blurred since)."""
        changes = [message for message in self.sent if message in ('["focus"]', '["blur"]')]
        return bool(changes) and changes[-1] == '["focus"]'

    async def focus(self) -> None:
        """Focus the terminal as a click would, without a click the app would see as a mouse event.

        xterm.js takes keys in a hidden textarea; focusing it makes the page send `["focus"]`, which
        this waits for (the app shows its footer of keys only while focused).
        """
        if self.focused():
            return
        textarea = self.page.locator("textarea.xterm-helper-textarea")
        if await textarea.count():
            await textarea.focus()
        else:
            await self.page.click(".xterm-screen", position={"x": 2, "y": 2})
        deadline = time.monotonic() + FOCUS_S
        while not self.focused():
            if time.monotonic() > deadline:
                raise AssertionError(f"the page did not send ['focus'] within {FOCUS_S:g} s; it sent {self.sent}")
            await asyncio.sleep(POLL_S)

    async def press(self, key: str) -> None:
        """Focus the terminal if it has not been, then press `key` (Playwright's names: "x", "Enter", "Space")."""
        await self.focus()
        await self.page.keyboard.press(key)

    async def resize_viewport(self, width: int, height: int, timeout: float = 30.0) -> tuple[int, int]:
        """Resize the browser's viewport and wait until the page has sent its terminal's new size,
        which this returns as (columns, lines); the app redraws at that size after."""
        before = self.screen.size
        await self.page.set_viewport_size({"width": width, "height": height})
        deadline = time.monotonic() + timeout
        while self.screen.size == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"the page kept its {before} terminal {timeout:g} s after the resize")
            await asyncio.sleep(POLL_S)
        return self.screen.size

    async def screenshot(self, path: Path) -> Path:
        """Save what the page shows (a PNG) at `path`, and return the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(path))
        return path


@contextlib.asynccontextmanager
async def open_page(
    url: str,
    chromium: str | None = None,
    viewport: dict[str, int] | None = None,
    failure_screenshot: Path | None = None,
    load_timeout: float = 60.0,
) -> AsyncIterator[TerminalPage]:
    """Open `url` (a textual-serve page on a loopback address) in headless Chromium.

    `chromium` is the browser's path (default: require_chromium()). If the block fails and
    `failure_screenshot` is given, the page is saved there first. The browser is always closed.
    """
    if not is_loopback(url):
        raise ValueError(f"the browser test opens loopback addresses only, not {url}")
    executable = chromium or require_chromium()
    with tempfile.TemporaryDirectory(prefix="natslab-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=list(CHROMIUM_ARGS),
                viewport=viewport or VIEWPORT,
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                terminal = TerminalPage(context, page)
                await context.route("**/*", terminal._route)
                await page.goto(url, wait_until="load", timeout=load_timeout * 1000)
                try:
                    yield terminal
                except GeneratorExit:
                    raise
                except BaseException:  # a failed assertion, pytest-timeout's failure, a cancellation
                    if failure_screenshot is not None:
                        with contextlib.suppress(Exception):
                            await terminal.screenshot(failure_screenshot)
                    raise
            finally:
                await context.close()
