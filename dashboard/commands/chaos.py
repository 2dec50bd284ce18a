"""`natslab chaos`: publish while killing, pausing and restarting at random; then drain and check.

Runs on a fresh embedded server in a temporary data dir; progress on stderr, the verdict on stdout.
Exits 1 when the guarded or the partitioned group lost, duplicated or reordered anything.
"""

from __future__ import annotations

import argparse
import json
import sys

from dashboard.commands import loops
from dashboard.commands.args import UsageError, add_cluster, add_partitions, add_sync, seconds, whole_number
from dashboard.commands.harness import scratch_data_dir
from dashboard.lab.chaos import ChaosConfig, run_chaos
from dashboard.lab.check_format import format_report
from dashboard.lab.natsserver import sync_label
from dashboard.lab.settings import Settings

HELP = "publish while killing, pausing and restarting at random; then check"
# Chaos pauses listeners past the ack wait, so it has a short one of its own (NATSLAB_ACK_WAIT is not used).
ACK_WAIT_S = 2.0
MAX_ACK_WAIT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ChaosConfig()
    add = parser.add_argument
    add("--events", type=whole_number, default=defaults.events, help=f"events to publish (default {defaults.events})")
    add("--users", type=whole_number, default=defaults.users, help=f"users (default {defaults.users})")
    add("--kills", type=whole_number, default=defaults.kills, help="listener SIGKILLs, each followed by a restart")
    add("--pauses", type=whole_number, default=defaults.pauses, help="listener SIGSTOPs past the ack wait")
    add("--crashes", type=whole_number, default=defaults.crashes,
        help="listeners told to crash right after their next commit, before acking; each restarted after")
    add("--server-restarts", type=whole_number, default=defaults.server_restarts,
        help="nats-server restarts (with --cluster, of every node at once)")
    add("--node-kills", type=whole_number, default=0,
        help="with --cluster: SIGKILLs of a node (half the time the stream's leader), each followed by a restart")
    add("--node-pauses", type=whole_number, default=0,
        help="with --cluster: SIGSTOPs of a node past the election timeout, each followed by SIGCONT")
    add("--listeners", type=whole_number, default=defaults.listeners, help="guarded listeners")
    add("--partitioned", type=whole_number, default=defaults.partitioned,
        help=f"partitioned listeners (default {defaults.partitioned}; 0 leaves the group out)")
    add_partitions(parser)
    add("--seed", type=int, default=None, help="random seed (the same seed gives the same plan)")
    add("--json", action="store_true", help="print the result as JSON")
    add("--ack-wait", type=seconds(0.5, MAX_ACK_WAIT_S), default=argparse.SUPPRESS,
        help=f"ack wait in seconds (default {ACK_WAIT_S:g})")  # fmt: skip
    add_sync(parser)
    add_cluster(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.events < 1 or args.users < 1 or args.listeners < 1:
        raise UsageError("--events, --users and --listeners must be at least 1")
    if (args.node_kills or args.node_pauses) and not settings.cluster:
        raise UsageError("--node-kills and --node-pauses break nodes of a cluster: add --cluster 3")
    config = ChaosConfig(
        events=args.events,
        users=args.users,
        kills=args.kills,
        pauses=args.pauses,
        crashes=args.crashes,
        server_restarts=args.server_restarts,
        seed=args.seed,
        listeners=args.listeners,
        partitioned=args.partitioned,
        cluster=settings.cluster,
        node_kills=args.node_kills,
        node_pauses=args.node_pauses,
    )
    # Given before the name, --ack-wait was checked against the dashboard's wider range.
    settings.ack_wait_s = getattr(args, "ack_wait", ACK_WAIT_S)
    if settings.ack_wait_s > MAX_ACK_WAIT_S:
        raise UsageError(f"--ack-wait for chaos must be between 0.5 and {MAX_ACK_WAIT_S:g} seconds")
    seed = "" if config.seed is None else f", seed {config.seed}"
    cluster = f", cluster of {config.cluster}" if config.cluster else ""
    uses = f"ack wait {settings.ack_wait_s:g} s, sync {sync_label(settings.sync)}{cluster}{seed}"
    print(f"natslab chaos: {uses}", file=sys.stderr, flush=True)

    def progress(line: str) -> None:
        sys.stderr.write(f"\r{line:<70}")
        sys.stderr.flush()

    with scratch_data_dir("chaos", settings) as scratch:
        try:
            result = loops.run(run_chaos(config, settings, progress), settings.loop)
        finally:
            sys.stderr.write("\n")
        assert result.report is not None
        if args.json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print(format_report(result.report) if config.users <= 30 else result.report.verdict_line())
            print(result.naive_summary())
            print(result.summary())
        scratch.ok = result.ok
    return 0 if result.ok else 1
