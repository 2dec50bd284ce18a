"""`natslab down`: stop the lab running on the data dir (or at --nats-url), whoever hosts it.

The request goes over NATS to the lab's host, which stops its listeners, its relay and the server it
started, as on Ctrl-C. A data dir with no lab is not an error: there is nothing to stop.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from dashboard.commands import loops
from dashboard.commands.args import add_common, seconds
from dashboard.lab.client import NoLab, ask, ping
from dashboard.lab.host import lab_url, lock_holder
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError, close_quietly, connect_with_retry, wait_until
from publisher.credentials import redact_url

HELP = "stop the lab that runs on the data dir (natslab up, or a dashboard's)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument(
        "--timeout", type=seconds(1, 600), default=30.0, metavar="S",
        help="how long to wait for the lab to stop (default 30)",
    )  # fmt: skip


def run(args: argparse.Namespace, settings: Settings) -> int:
    return loops.run(down(settings, args.timeout), settings.loop)


async def down(settings: Settings, timeout: float) -> int:
    url = lab_url(settings)
    state = await ping(url) if url is not None else None
    if url is None or state is None:
        where = f" or at {redact_url(url)}" if url else ""
        print(f"natslab down: no lab runs on {settings.data_dir}{where}; nothing to stop", file=sys.stderr)
        return 0
    host = state.host
    nc = await connect_with_retry(url, "natslab-down", timeout=min(timeout, settings.nats_timeout_s))
    try:
        await ask(nc, url, "stop", reason=f"natslab down (pid {os.getpid()}) asked it to")
    except NoLab:
        pass  # it stopped meanwhile
    finally:
        await close_quietly(nc)

    # On this machine the host's lock goes last, once everything it started has stopped.
    local = host.hostname == socket.gethostname() and Path(host.data_dir) == settings.data_dir.absolute()

    async def gone() -> bool:
        return await ping(url, timeout=1.0) is None and not (local and lock_holder(settings.data_dir))

    try:
        await wait_until(gone, timeout, f"the lab at {redact_url(url)} to stop", interval=0.2)
    except TimeoutError as exc:
        raise LabError(f"{exc}; its host is {host.command}, pid {host.pid} on {host.hostname}") from None
    print(f"natslab down: stopped the lab of {host.data_dir} ({host.command}, pid {host.pid})", file=sys.stderr)
    return 0
