"""The event loop the headless processes run on: uvloop where it is installed, asyncio's own otherwise.

Listeners, the publisher of `scenario`, `chaos` and `bench`, and the other headless commands spend
most of their time in the event loop and in nats-py's socket handling. uvloop does that work in C: in
`natslab bench` on this machine it cut each listener's CPU by about a tenth at 1,000 events/s and
halved publish -> applied at 3,000/s (p50 48 -> 25 ms, p99 255 -> 76 ms). The dashboard keeps
asyncio's loop, which Textual is made for. `NATSLAB_LOOP=asyncio` runs everything on asyncio's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("uvloop", "asyncio")
LOOP_VARIABLE = "NATSLAB_LOOP"


def default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def loop_name(text: str) -> str:
    """`uvloop` or `asyncio`; uvloop only where it is installed."""
    if text not in LOOPS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOOPS)}")
    if text == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise argparse.ArgumentTypeError("uvloop is not installed here; use asyncio")
    return text


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """`asyncio.run(main)` on `loop` (by default NATSLAB_LOOP's, else uvloop where installed)."""
    if loop is None:
        loop = os.environ.get(LOOP_VARIABLE) or default_loop()
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
