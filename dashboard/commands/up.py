"""`natslab up`: the lab headless, until Ctrl-C, SIGTERM or `natslab down`.

It starts (or joins) the NATS server, the publisher with its outbox relay, the listeners and their
supervisor, and serves them on the lab's control subject, so any number of dashboards attach to it
(`natslab`, `natslab --attach`, `natslab web`). It prints the server's URL first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from dashboard.commands import loops
from dashboard.commands.args import add_common, add_lab_options
from dashboard.lab.client import ping
from dashboard.lab.host import HostLock, describe_holder, host, server_to_host_on
from dashboard.lab.natsserver import ServerError
from dashboard.lab.settings import Settings
from dashboard.lab.waits import LabError
from publisher.credentials import redact_url

HELP = "run the lab headless (server, publisher, listeners) for dashboards to attach to"
COMMAND = "natslab up"
# How often `up` looks whether its embedded server ended by itself.
WATCH_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    add_lab_options(parser)
    # Who started this `up`, for the dashboards to say (`natslab web` passes itself); not for people.
    parser.add_argument("--started-by", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace, settings: Settings) -> int:
    command = f"{COMMAND} (for {args.started_by})" if args.started_by else COMMAND
    return loops.run(serve(settings, command), settings.loop)


async def serve(settings: Settings, command: str = COMMAND) -> int:
    """Host the lab until asked to stop; a server that ends by itself is a failure (exit 1)."""
    lock = HostLock(settings.data_dir)
    if not lock.acquire(command):
        raise LabError(
            f"a lab already runs on {settings.data_dir} ({describe_holder(settings)}):"
            f" `natslab{settings.data_dir_option()}` attaches to it, `natslab down{settings.data_dir_option()}` stops it"
        )
    try:
        url = await server_to_host_on(settings)
        if url is not None and (found := await ping(url)) is not None:
            raise LabError(
                f"a lab already answers at {redact_url(url)} ({found.host.command}, pid {found.host.pid} on {found.host.hostname},"
                f" data dir {found.host.data_dir})"
            )
        settings.nats_url = url
        hosted = await host(settings, command, lock)
    except BaseException:
        lock.release()
        raise
    stop = asyncio.Event()
    why: list[str] = []

    def stop_because(reason: str) -> None:
        why.append(reason)
        stop.set()

    hosted.service.on_stop = stop_because
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop_because, "natslab up was interrupted (Ctrl-C)")
    loop.add_signal_handler(signal.SIGTERM, stop_because, "natslab up was terminated (SIGTERM)")
    lab = hosted.lab
    print(redact_url(lab.url), flush=True)
    members = lab.state().members
    guarded = sum(1 for member in members if member.mode == "guarded")
    option = settings.data_dir_option()
    on = f" on a JetStream cluster of {len(lab.nodes)} nodes" if lab.nodes else ""
    print(
        f"natslab up: the lab on {settings.data_dir} runs{on} ({guarded} guarded and {len(members) - guarded} naive"
        f" listeners); `natslab{option}` attaches a dashboard, `natslab web{option}` one in a browser;"
        f" `natslab down{option}` or Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), WATCH_S)
            except asyncio.TimeoutError:
                pass
            server = lab.server
            if server is not None and lab.server_state == "running" and server.exit_code is not None:
                raise ServerError(
                    f"nats-server (pid {server.pid}) ended by itself with code {server.exit_code}; see {server.log_file}"
                )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        reason = why[0] if why else "natslab up failed"
        await hosted.stop(reason)
    print(f"natslab up: stopped: {why[0]}", file=sys.stderr, flush=True)
    return 0
