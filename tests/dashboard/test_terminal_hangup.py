"""The dashboard in a real terminal whose window goes away: it must end, and take its lab with it.

`make run` in a tmux pane: when the pane is killed, make (the session leader) gets SIGHUP and waits
for its child; the dashboard gets no signal at all. This test builds the same situation with a
pseudo-terminal and make, then closes the terminal.
"""

from __future__ import annotations

import fcntl
import os
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from leftovers import running_with

ROWS, COLUMNS = 48, 160


def make_controlling_terminal() -> None:
    """preexec_fn, after setsid: stdin (the pty) becomes the new session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_the_dashboard_ends_with_its_lab_when_its_terminal_hangs_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    makefile = tmp_path / "Makefile"
    natslab = shlex.join([sys.executable, "-m", "dashboard.commands", "--data-dir", str(data_dir)])
    makefile.write_text(f"run:\n\t{natslab}\n")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    make = subprocess.Popen(
        ["make", "-s", "-f", str(makefile), "run"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=make_controlling_terminal,
        env={**os.environ, "TERM": "xterm-256color"}, cwd=Path(__file__).parent.parent.parent,
    )  # fmt: skip
    os.close(slave)
    log = data_dir / "logs" / "dashboard.log"
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "attached to the lab of a natslab dashboard" in log.read_text()):
            assert time.monotonic() < deadline, "the dashboard did not start its lab within 60 s"
            if select.select([master], [], [], 0.1)[0]:
                os.read(master, 65536)  # what the dashboard draws; read, or its writes would block
        assert running_with(str(data_dir)), "the lab's processes should run before the hang-up"
        os.close(master)  # the terminal window goes away
        master = -1
        deadline = time.monotonic() + 30
        while left := running_with(str(data_dir)):
            if time.monotonic() > deadline:
                pytest.fail("still running 30 s after the terminal hung up:\n" + "\n".join(left))
            time.sleep(0.1)
        assert "the terminal hung up" in log.read_text()
        assert make.wait(timeout=30) != 0
    finally:
        if master >= 0:
            os.close(master)
        if make.poll() is None:
            make.kill()
            make.wait()
