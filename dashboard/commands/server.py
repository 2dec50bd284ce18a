"""`natslab server`: the embedded nats-server (or cluster) in the foreground, for commands run by hand."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from dashboard.commands import loops
from dashboard.commands.args import UsageError, add_cluster, add_common, add_sync, port
from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.lab import claim_topology, embedded_server
from dashboard.lab.natsserver import EmbeddedServer, PortInUse, ServerError, sync_label
from dashboard.lab.settings import Settings

HELP = "run the embedded nats-server in the foreground"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, nats=False)
    parser.add_argument("--port", type=port, default=None, help="client port (default: a free one)")
    add_sync(parser)
    add_cluster(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.cluster and args.port is not None:
        raise UsageError("--port sets one server's port; a cluster's nodes take free ports (each is printed)")
    return loops.run(serve(settings, args.port), settings.loop)


async def serve(settings: Settings, client_port: int | None) -> int:
    """Run until Ctrl-C or SIGTERM; print the URL first, and leave it in the data dir for other commands.

    A server that ends by itself is a failure (ServerError, exit 1), never a quiet exit 0.
    """
    if settings.cluster:
        server = embedded_server(settings)
    else:
        server = EmbeddedServer(
            settings.store_dir, settings.logs_dir / "nats-server.log", port=client_port, sync=settings.sync
        )
    try:
        url = await server.start()
    except PortInUse as exc:
        raise ServerError(f"{exc}; pick another --port or leave it out for a free one") from None
    try:
        claim_topology(settings)
        if isinstance(server, EmbeddedCluster):
            await server.wait_for_jetstream()  # the URLs go out once a stream can be declared
    except BaseException:
        await server.stop()
        raise
    # Before the URLs go out: a caller that reads them and stops us at once gets a clean stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings.url_file.write_text(url + "\n")
    for one in url.split(","):  # one line per node: each is a way in
        print(one, flush=True)
    store = settings.cluster_store_dir if settings.cluster else settings.store_dir
    what = f"JetStream cluster of {settings.cluster} nodes" if settings.cluster else "JetStream"
    print(
        f"{what}; store: {store}, sync {sync_label(settings.sync)}; log: {server.log_file};"
        f" monitoring: {server.monitor_url}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.is_set() and server.running:
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
        code = server.exit_code
        if not stop.is_set() and code is not None:
            raise ServerError(f"nats-server (pid {server.pid}) ended by itself with code {code}; see {server.log_file}")
    finally:
        await server.stop()
        settings.url_file.unlink(missing_ok=True)
    return 0
