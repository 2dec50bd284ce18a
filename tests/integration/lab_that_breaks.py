"""Tests that break on purpose inside a running lab; test_no_leftovers.py runs them in a pytest of
its own (this file's name keeps it out of the suite) and checks that nothing is left running.

NATSLAB_READY_FILE, when set, is written once the lab is up, so the caller knows when to interrupt.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dashboard.lab.probes import wait_listeners_ready


async def start_lab(make_lab):
    lab = await make_lab(listeners=2, naive=1)
    await wait_listeners_ready(lab)
    ready = os.environ.get("NATSLAB_READY_FILE")
    if ready:
        Path(ready).write_text(lab.url)
    return lab


async def test_fails(make_lab) -> None:
    await start_lab(make_lab)
    raise AssertionError("failing on purpose inside a running lab")


async def test_hangs(make_lab) -> None:
    await start_lab(make_lab)
    await asyncio.Event().wait()  # until pytest-timeout ends the test, or an interrupt


async def test_leaks_its_lab(tmp_path: Path) -> None:
    """Starts a lab outside any fixture and never stops it, as a careless test would."""
    from dashboard.lab.lab import Lab
    from dashboard.lab.settings import Settings

    lab = Lab(Settings(data_dir=tmp_path / "data", ack_wait_s=2.0))
    await lab.start(listeners=2, naive=0)
    await wait_listeners_ready(lab)
    raise AssertionError("failing on purpose, with the lab still running")
