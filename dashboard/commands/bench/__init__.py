"""`natslab bench`: what the transport gives, what the guard costs, and whether the lab keeps up.

One run, on a fresh embedded server in a temporary data dir, phase by phase:

1. durability: events published alone with each sync mode (`always`, `interval`), each on a fresh
   server of its own, in a burst and one at a time: what an fsync before every PubAck costs (the
   other phases run with `--sync`);
2. out-of-order resolution with `--defer nak`: early events (#2 before #1) published straight to the
   subjects, their predecessors once every early event has been deferred;
3. recovery: SIGKILL of a listener holding an event, until another listener applied it;
4. the same out-of-order round with `--defer ack-wait`;
5. the dashboard's cost, measured from outside: it runs as its own process in a private tmux server
   (this module never imports Textual), watching this run's server and data dir; CPU and RSS come
   from /proc, the screen from `capture-pane` (first full frame; `?` both ways while events flow);
6. throughput, `--repeat` rounds of two phases of `--phase-seconds` each, in alternating order
   (`throughput.py`): the raw transport (events published with `publish_async` to a stream of their
   own, consumed by L processes through a pull consumer configured like the guarded group, acked, no
   work) and the guarded pipeline (the publisher with its outbox, JetStream, L guarded listeners,
   `accounts.db`); the verdict takes the median round;
7. scaling: one pipeline phase per `--scale-listeners` count and per `--scale-users` count;
8. publish-to-applied latency at each of `--rates`, open loop (each request at its time, whether or
   not earlier ones are done): from the time the request was due to the time its listener reported
   it committed and acknowledged, with where the time went (outbox, relay, delivery, apply).

`--failover` runs none of these but one phase on an embedded cluster (`--cluster`, 3 nodes unless
told otherwise): the stream's leader SIGKILLed, sent into lame duck and SIGTERMed, `--failover-rounds`
times each, while two probes publish; how long publishing stopped (`failover.py`).

`--partitioned` runs none of these but the guarded and partitioned groups side by side, L listeners
each, on the same events published once: without faults, then with one slow user; throughput,
publish -> applied (the slow user's partition-mates apart), redeliveries per 1,000 events
(`partitioned.py`). It is a run of its own, not a phase of the default one: the partitioned group's
sourced stream copies every event (a second fsync per event), which would weigh on every other
phase, and started late it would first copy every event the run had published so far.

It ends with the checker: a fast run that loses events is no result. Progress goes to stderr, the
table (or `--json`) to stdout. Timings are wall-clock figures on a shared machine; they belong here,
never in timed test assertions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard.commands import loops
from dashboard.commands.args import (
    UsageError,
    add_ack_wait,
    add_cluster,
    add_partitions,
    add_sync,
    positive_int,
    seconds,
)
from dashboard.commands.bench.figures import (
    DEFAULT_COMPARE_EVENTS,
    DEFAULT_DASHBOARD_CPU_S,
    DEFAULT_DASHBOARD_EVENTS,
    DEFAULT_DASHBOARD_RATE,
    DEFAULT_EVENTS,
    DEFAULT_FAILOVER_ROUNDS,
    DEFAULT_LATENCY_S,
    DEFAULT_LISTENERS,
    DEFAULT_PAIRS,
    DEFAULT_PHASE_S,
    DEFAULT_RATES,
    DEFAULT_REPEAT,
    DEFAULT_SCALE_LISTENERS,
    DEFAULT_SCALE_USERS,
    DEFAULT_SLOW_EVERY,
    DEFAULT_SLOW_MS,
    DEFAULT_USERS,
    BenchConfig,
)
from dashboard.commands.harness import scratch_data_dir
from dashboard.lab.settings import Settings

HELP = "measure the pipeline against the raw transport, then check"


_duration_seconds = seconds(0.1, 3600)


def int_list(text: str) -> tuple[int, ...]:
    """`1,2,4`: positive whole numbers, comma-separated."""
    try:
        values = tuple(positive_int(part.strip()) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive integers") from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `natslab bench`; the run always uses a fresh embedded server and a temp data dir."""
    add = parser.add_argument
    add("--repeat", type=positive_int, default=DEFAULT_REPEAT,
        help=f"rounds of raw transport and guarded pipeline, interleaved; the verdict takes the median"
             f" (default {DEFAULT_REPEAT})")
    add("--phase-seconds", type=_duration_seconds, default=DEFAULT_PHASE_S,
        help=f"how long each throughput phase offers events (default {DEFAULT_PHASE_S:g})")
    add("--users", type=positive_int, default=DEFAULT_USERS,
        help=f"users the events are spread over (default {DEFAULT_USERS:,}); few users means many deferrals")
    add("--listeners", type=positive_int, default=DEFAULT_LISTENERS,
        help=f"guarded listeners, and raw consumers (default {DEFAULT_LISTENERS})")
    add("--scale-listeners", type=int_list, default=DEFAULT_SCALE_LISTENERS, metavar="N,N,...",
        help=f"listener counts of the scaling rows (default {','.join(map(str, DEFAULT_SCALE_LISTENERS))})")
    add("--scale-users", type=int_list, default=DEFAULT_SCALE_USERS, metavar="N,N,...",
        help=f"user counts of the scaling rows (default {','.join(map(str, DEFAULT_SCALE_USERS))})")
    add("--batch", type=positive_int, default=None, help="events fetched per pull (default: the listeners' default)")
    add_ack_wait(parser)
    add_sync(parser)
    add("--rates", type=int_list, default=DEFAULT_RATES, metavar="N,N,...",
        help=f"offered events/s of the latency runs (default {','.join(map(str, DEFAULT_RATES))})")
    add("--latency-seconds", type=_duration_seconds, default=DEFAULT_LATENCY_S,
        help=f"length of each fixed-rate latency run (default {DEFAULT_LATENCY_S:g})")
    add("--events", type=positive_int, default=None,
        help=f"events of the publish-alone runs, one per sync mode (default {DEFAULT_EVENTS:,});"
             f" with --partitioned, of each phase (default {DEFAULT_COMPARE_EVENTS:,})")
    add("--dashboard-rate", type=positive_int, default=DEFAULT_DASHBOARD_RATE,
        help=f"offered events/s while the dashboard's CPU and keys are measured (default {DEFAULT_DASHBOARD_RATE:,})")
    add("--pairs", type=positive_int, default=DEFAULT_PAIRS,
        help=f"out-of-order pairs (#2 before #1) per defer mode (default {DEFAULT_PAIRS})")
    add("--dashboard-events", type=positive_int, default=DEFAULT_DASHBOARD_EVENTS,
        help=f"events that flow past the dashboard (default {DEFAULT_DASHBOARD_EVENTS:,})")
    add("--dashboard-seconds", type=_duration_seconds, default=DEFAULT_DASHBOARD_CPU_S,
        help=f"length of the fixed-rate run with the dashboard watching (default {DEFAULT_DASHBOARD_CPU_S:g})")
    add("--no-dashboard", action="store_true", help="skip the dashboard's cost")
    add("--json", action="store_true", help="print the results as JSON")
    add("--keep", action="store_true", help="keep the temporary data dir (store, databases, logs)")
    add("--profile", type=Path, default=None, metavar="DIR",
        help="sample the pipeline's processes and the dashboard with py-spy into DIR (collapsed stacks)")
    add("--failover", action="store_true",
        help="only the failover of the stream's leader (SIGKILL, lame duck, SIGTERM), on an embedded cluster")
    add("--failover-rounds", type=positive_int, default=DEFAULT_FAILOVER_ROUNDS,
        help=f"rounds of each fault with --failover (default {DEFAULT_FAILOVER_ROUNDS})")
    add_cluster(parser)
    add("--partitioned", action="store_true",
        help="only the guarded and partitioned groups side by side (--listeners each), without faults and"
             " with one slow user")
    add_partitions(parser)
    add("--slow-every", type=positive_int, default=None, metavar="N",
        help=f"with --partitioned: one event in N is the slow user's (default {DEFAULT_SLOW_EVERY})")
    add("--slow-ms", type=positive_int, default=None, metavar="MS",
        help=f"with --partitioned: how long each of the slow user's events takes (default {DEFAULT_SLOW_MS})")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; the table (or JSON) on stdout, progress on stderr; 0 when the check passed."""
    from dashboard.commands.bench.report import format_table
    from dashboard.commands.bench.run import Bench

    if hasattr(args, "cluster") and not args.failover:
        raise UsageError("natslab bench runs on one server; --cluster goes with --failover (the failover measures)")
    if args.partitioned and args.failover:
        raise UsageError("--partitioned and --failover are runs of their own: one at a time")
    given = [flag for flag, value in (("--partitions", getattr(args, "partitions", None)),
                                      ("--slow-every", args.slow_every), ("--slow-ms", args.slow_ms)) if value is not None]
    if given and not args.partitioned:
        raise UsageError(f"{given[0]} goes with --partitioned (the partitioned group's measures)")
    config = BenchConfig(
        events=args.events or (DEFAULT_COMPARE_EVENTS if args.partitioned else DEFAULT_EVENTS),
        users=args.users,
        listeners=args.listeners,
        batch=args.batch or settings.batch,
        repeat=args.repeat,
        phase_s=args.phase_seconds,
        scale_listeners=args.scale_listeners,
        scale_users=args.scale_users,
        rates=args.rates,
        latency_s=args.latency_seconds,
        dashboard_rate=args.dashboard_rate,
        pairs=args.pairs,
        dashboard=not args.no_dashboard,
        dashboard_events=args.dashboard_events,
        dashboard_cpu_s=args.dashboard_seconds,
        ack_wait_s=settings.ack_wait_s,
        sync=settings.sync,
        profile_dir=args.profile.resolve() if args.profile else None,
        failover=args.failover,
        # NATSLAB_CLUSTER too, but only for the failover measures, which need a cluster.
        cluster=(settings.cluster or 3) if args.failover else 0,
        failover_rounds=args.failover_rounds,
        partitioned=args.partitioned,
        partitions=settings.partitions,
        slow_every=args.slow_every or DEFAULT_SLOW_EVERY,
        slow_ms=args.slow_ms or DEFAULT_SLOW_MS,
    )
    if max(config.listeners, *config.scale_listeners) > 26:
        raise UsageError("--listeners and --scale-listeners must be at most 26")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with scratch_data_dir("bench", settings, keep=args.keep) as scratch:
        result = loops.run(Bench(config, scratch.data_dir, progress).run(), settings.loop)
        if args.json:
            print(json.dumps(result.to_json(), indent=2, default=str))
        else:
            print(format_table(result))
        scratch.ok = result.ok
    return 0 if result.ok else 1
