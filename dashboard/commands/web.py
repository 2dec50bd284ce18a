"""`natslab web`: the dashboard in a browser, served by textual-serve.

textual-serve starts one dashboard process per browser tab (`natslab --attach`), and each attaches to
the one lab of the data dir. When no lab runs there, `natslab web` starts one first (`natslab up` as
its child, stopped when `web` ends). Under textual-serve a dashboard's stdout is its channel to the
page, so no process started from one may inherit it: an attached dashboard starts no process at all,
and the lab's own output goes to `logs/up.out`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dashboard.commands.args import add_common, add_lab_options, port
from dashboard.lab.client import ping
from dashboard.lab.host import WEB_PID_VARIABLE, lab_url, lock_holder
from dashboard.lab.logs import LOGS
from dashboard.lab.natsserver import die_with_parent
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError
from publisher.credentials import url_for_child

HELP = "serve the dashboard in a browser (every tab attaches to the one lab)"
DEFAULT_PORT = 8000
LOOPBACK = "127.0.0.1"
# How long `web` waits for the lab it started (or found starting) to answer.
LAB_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    add_lab_options(parser)
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"the web port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--host", default=LOOPBACK,
        help="the address to listen on (default 127.0.0.1: this machine only); anyone who reaches another"
        " can use every key of the lab",
    )  # fmt: skip


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def port_in_use(host: str, number: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, number))
        except OSError:
            return True
    return False


def dashboard_command(settings: Settings) -> str:
    """What textual-serve runs for each tab: a dashboard that attaches and never starts a lab. The
    tabs inherit this process's environment (see `child_environment`)."""
    command = [sys.executable, "-m", "dashboard.commands", "--data-dir", str(settings.data_dir.absolute()), "--attach"]
    if settings.nats_url:
        command += url_for_child(settings.nats_url)[0]
    return shlex.join(command)


def child_environment(settings: Settings) -> dict[str, str]:
    """What a process started here needs in its environment beyond this one's: the URL given, when
    it carries a secret (the credentials flags are there already, written by `natslab` itself)."""
    return url_for_child(settings.nats_url)[1] if settings.nats_url else {}


def up_command(settings: Settings) -> list[str]:
    """`natslab up` with the lab options this command was given."""
    command = [
        sys.executable, "-m", "dashboard.commands", "up",
        "--started-by", "natslab web",
        "--data-dir", str(settings.data_dir.absolute()),
        "--listeners", str(settings.listeners),
        "--naive", str(settings.naive),
        "--ack-wait", str(settings.ack_wait_s),
        "--defer", settings.defer,
    ]  # fmt: skip
    if settings.gap_timeout_s is not None:
        command += ["--gap-timeout", str(settings.gap_timeout_s)]
    if settings.nats_url:
        command += url_for_child(settings.nats_url)[0]
    else:
        command += ["--sync", settings.sync]
        if settings.cluster:
            command += ["--cluster", str(settings.cluster)]
    return command


def lab_answers(settings: Settings) -> bool:
    # asyncio's own loop, not uvloop: textual-serve runs on asyncio's, and a uvloop run before it
    # leaves the signal wakeup fd behind closed, so Ctrl-C printed an error.
    url = lab_url(settings)
    return url is not None and asyncio.run(ping(url)) is not None


def start_lab(settings: Settings) -> subprocess.Popen | None:
    """Make sure a lab runs on the data dir; the `natslab up` process started for it, if one was."""
    if lab_answers(settings):
        return None
    process = None
    output = settings.data_dir / LOGS / "up.out"
    if not lock_holder(settings.data_dir):  # nobody is starting one: start it
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "ab") as out:
            process = subprocess.Popen(
                up_command(settings), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **child_environment(settings)}, preexec_fn=die_with_parent,
            )  # fmt: skip
        print(f"natslab web: starting a lab on {settings.data_dir} (natslab up, pid {process.pid}; output in {output})",
              file=sys.stderr, flush=True)  # fmt: skip
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    try:
        while not lab_answers(settings):
            if process is not None and process.poll() is not None:
                code = process.returncode
                raise LabError(f"the lab did not start (natslab up exited with code {code}): {last_line(output)}")
            if time.monotonic() > deadline:
                raise LabError(f"no lab answered on {settings.data_dir} within {LAB_START_TIMEOUT_S:g} s")
            time.sleep(0.2)
    except BaseException:  # a failure, or Ctrl-C while waiting: the lab started here goes too
        stop_lab(process)
        raise
    return process


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def stop_lab(process: subprocess.Popen | None) -> None:
    """Stop the `natslab up` this command started (by its pid), as Ctrl-C would."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from textual_serve.server import Server

    host, number = args.host, args.port
    if port_in_use(host, number):
        raise LabError(f"port {number} on {host} is in use by another program; pick another --port")
    if not is_loopback(host):
        print(
            f"natslab web: warning: listening on {host}, not loopback: anyone who reaches port {number} can"
            " kill listeners, restart the server and publish events",
            file=sys.stderr,
            flush=True,
        )
    started = start_lab(settings)
    try:
        print(
            f"natslab web: the dashboard is at http://{host}:{number} (every tab attaches to the lab on"
            f" {settings.data_dir}); Ctrl-C stops{' it and the lab it started' if started else ''}",
            file=sys.stderr,
            flush=True,
        )
        # The tabs' dashboards inherit it, and end if this process is killed outright.
        os.environ[WEB_PID_VARIABLE] = str(os.getpid())
        os.environ.update(child_environment(settings))
        Server(dashboard_command(settings), host=host, port=number, title="natslab").serve()
    finally:
        stop_lab(started)
    print(f"natslab web: stopped{' with the lab it started' if started else ''}", file=sys.stderr, flush=True)
    return 0

