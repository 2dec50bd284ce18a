"""The helper processes of `natslab bench`, started as `python -m dashboard.commands.bench ...`."""

import signal
import sys

from dashboard.commands import loops
from dashboard.commands.bench.dashboard_cost import watchdog
from dashboard.commands.bench.raw_consumer import raw_consume

if len(sys.argv) == 6 and sys.argv[1] == "raw-consumer":
    loops.run(raw_consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
elif len(sys.argv) == 4 and sys.argv[1] == "watchdog":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    watchdog(int(sys.argv[2]), sys.argv[3])
else:
    sys.exit("helper processes of `natslab bench`: raw-consumer URL STREAM DURABLE BATCH | watchdog PID SOCKET")
