"""Running the dashboard in a terminal: its log file, and ending it when the terminal goes away."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from dashboard.lab.host import WEB_PID_VARIABLE
from dashboard.lab.logs import log_path, log_to_file
from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp

log = logging.getLogger(__name__)

# How often the dashboard checks that its terminal is still there (see end_when_the_terminal_hangs_up).
TERMINAL_CHECK_S = 1.0


def end_when_the_terminal_hangs_up(fd: int, interval: float = TERMINAL_CHECK_S) -> None:
    """End this process once its controlling terminal on `fd` has hung up (run in a daemon thread).

    A terminal can go without a SIGHUP reaching the dashboard: a tmux pane running `make run` is
    killed, make (the session leader) gets the signal and waits for its child. Textual does not notice:
    its output thread dies on the first failed write, the next writes block the event loop for good
    and its input thread spins on end-of-file, holding the lab and a core. Exiting hard is safe here:
    the listener processes and the embedded server end with this process (PR_SET_PDEATHSIG), and
    every database write is already committed.
    """
    while True:
        time.sleep(interval)
        try:
            os.tcgetpgrp(fd)
        except OSError as exc:
            log.warning("the terminal hung up (%s); ending the dashboard and its lab", exc)
            logging.shutdown()
            os._exit(128 + signal.SIGHUP)


def end_with_process(pid: int, interval: float = TERMINAL_CHECK_S) -> None:
    """End this process once process `pid` is gone (run in a daemon thread).

    A dashboard in a browser tab is started by textual-serve inside `natslab web`, through a shell.
    Killed outright, `web` cannot tell it to quit, and a Textual app under textual-serve does not end
    when its input does: without this it would stay, attached to the lab, for good.
    """
    while True:
        time.sleep(interval)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("natslab web (pid %d) is gone; ending this dashboard", pid)
            logging.shutdown()
            os._exit(128 + signal.SIGHUP)
        except PermissionError:  # alive, another user's: not ours to watch
            return


def run_dashboard(settings: Settings) -> int:
    """Run the dashboard until `q`; logs go to `logs/dashboard.log` in the data dir, never to the terminal."""
    handler = log_to_file(log_path(settings.data_dir, "dashboard"))
    try:
        os.tcgetpgrp(sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):  # not our controlling terminal: nothing to watch
        pass
    else:
        threading.Thread(
            target=end_when_the_terminal_hangs_up, args=(sys.__stdout__.fileno(),), name="terminal-watch", daemon=True
        ).start()
    web_pid = os.environ.get(WEB_PID_VARIABLE, "")
    if web_pid.isdigit():
        threading.Thread(target=end_with_process, args=(int(web_pid),), name="web-watch", daemon=True).start()
    try:
        code = NatslabApp(settings).run()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return code or 0
