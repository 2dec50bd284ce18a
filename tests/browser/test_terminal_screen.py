"""The emulated terminal reads Textual's output right: truecolor, synchronized output, its queries,
UTF-8 split across frames, and the size the client asks for."""

from __future__ import annotations

import json
import re

import pytest
from terminal_screen import TerminalScreen, resize_request, wait_for_screen

# What Textual sends for a frame, in short: sync start, a truecolor cell run, box drawing, sync end.
FRAME = (
    "\x1b[?2026h"
    "\x1b[1;1H\x1b[38;2;7;79;134;48;2;18;18;18m╭─\x1b[0m\x1b[1;38;2;224;224;224;48;2;18;18;18m Account database \x1b[0m"
    "\x1b[2;1H\x1b[38;2;225;225;225mjim     3     $10\x1b[0m"
    "\x1b[?2026l"
).encode()


def test_truecolor_and_synchronized_output_leave_only_the_text() -> None:
    screen = TerminalScreen(40, 4)
    screen.feed(b"\x1b[?1049h\x1b[?1000h\x1b[?1003h\x1b[?1015h\x1b[?1006h\x1b[?25l\x1b[?2026$p\x1b[?2004h")
    screen.feed(FRAME)
    assert screen.text().splitlines()[:2] == ["╭─ Account database", "jim     3     $10"]
    assert screen.screen.buffer[0][0].fg == "074f86"  # the colour was parsed, not printed


def test_a_character_split_across_two_frames_is_decoded_whole() -> None:
    screen = TerminalScreen(20, 2)
    data = "▶  1 ✓ $10".encode()
    cut = data.index("✓".encode()) + 1  # inside the three bytes of ✓
    screen.feed(data[:cut])
    screen.feed(data[cut:])
    assert screen.text().splitlines()[0] == "▶  1 ✓ $10"
    assert screen.received == len(data)


def test_a_resize_request_sets_the_size_and_anything_else_does_not() -> None:
    screen = TerminalScreen()
    assert screen.size == (80, 24)
    screen.client_sent(json.dumps(["resize", {"width": 155, "height": 50}]))
    assert screen.size == (155, 50)
    for message in ('["stdin", "x"]', '["ping", "1"]', '["focus"]', "not json", b"\x00", '["resize", {"width": 0}]'):
        screen.client_sent(message)
    assert screen.size == (155, 50)
    assert resize_request('["resize", {"width": 100, "height": 30}]') == (100, 30)


async def test_a_wait_fails_at_its_deadline_showing_the_screen() -> None:
    screen = TerminalScreen(30, 2)
    screen.feed(b"Starting")
    assert (await wait_for_screen(screen, re.compile(r"Start(\w+)"), 1.0)).group(1) == "ing"
    with pytest.raises(AssertionError, match=r"(?s)timed out after 0.2 s waiting for 'Ready'.*Starting"):
        await wait_for_screen(screen, "Ready", 0.2)
    with pytest.raises(AssertionError, match="the websocket closed"):
        await wait_for_screen(screen, "Ready", 30.0, lambda: "the websocket closed")
