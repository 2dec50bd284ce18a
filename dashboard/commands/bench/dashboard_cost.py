"""The dashboard's cost, measured from outside: the dashboard runs as its own process in a private tmux
server (the benchmark never imports Textual), watching the benchmark's server and data dir. CPU and
RSS come from /proc, the screen from `capture-pane`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashboard.commands.bench.figures import spread, traffic
from dashboard.lab.natsserver import die_with_parent
from dashboard.lab.waits import LabError, wait_until

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

# What the dashboard shows once its first full frame is up, and what `?` opens.
FRAME_MARKERS = ("Queue groups", "Account database", "Timeline", "quit")
HELP_MARKER = "natslab keys"
TERMINAL_SIZE = (160, 48)
RSS_SAMPLES = 10
# The pipeline is slower than the offer: with a million events, the last are applied minutes after.
WAIT_APPLIED_S = 600


async def dashboard_cost(bench: Bench) -> dict[str, Any]:
    if not bench.config.dashboard:
        return {"available": False, "reason": "skipped (--no-dashboard)"}
    reason = dashboard_unavailable()
    if reason is not None:
        bench.progress(f"    n/a: {reason}")
        return {"available": False, "reason": reason}
    await bench.ensure_listeners("nak")
    terminal = TmuxTerminal(f"natslab-bench-{os.getpid()}")
    # The dashboard watches this run's server and data dir and starts no listeners of its own.
    command = [
        sys.executable, "-m", "dashboard.commands",
        "--nats-url", bench.lab.url,
        "--data-dir", str(bench.data_dir),
        "--listeners", "0",
        "--naive", "0",
        "--partitioned", "0",
        "--ack-wait", f"{bench.config.ack_wait_s:g}",
    ]  # fmt: skip
    try:
        launched = time.monotonic()
        pid = await terminal.start(command, TERMINAL_SIZE)
        try:
            await wait_until(lambda: terminal.shows(*FRAME_MARKERS), 20, "the dashboard's first full frame", 0.01)
        except TimeoutError:
            screen = await terminal.capture()
            bench.progress("    n/a: no full frame within 20 s")
            return {"available": False, "reason": "no full frame within 20 s", "screen": screen[-2000:]}
        first_frame = time.monotonic() - launched
        bench.progress(f"    first full frame after {first_frame:.2f} s")
        figures = await _dashboard_under_load(bench, pid, terminal)
        bench.progress(
            f"    {figures['cpuPercentAtRate']:.1f}% of one core at {figures['offeredPerSecond']:,}/s;"
            f" key -> screen p50 {figures['keyToScreen']['p50_ms']} ms;"
            f" peak RSS {figures['peakRssMB']:.0f} MB after {figures['eventsWhileRunning']:,} events"
        )
        return {"available": True, "firstFrame_s": round(first_frame, 3), **figures}
    finally:
        await terminal.stop()


async def _dashboard_under_load(bench: Bench, pid: int, terminal: TmuxTerminal) -> dict[str, Any]:
    """CPU share at the fixed rate with nobody at the keys; then, still at that rate, key latency (the
    help screen opening and closing costs CPU of its own, kept out of the CPU figure); then the rest of
    the events at full speed, CPU and RSS."""
    config = bench.config
    per_window = max(1, round(config.dashboard_rate * config.dashboard_cpu_s))
    cpu_count = min(config.dashboard_events, per_window)
    steady_count = min(config.dashboard_events, 2 * per_window)
    requests = traffic(config.users, config.dashboard_events, seed=4)
    mark = await bench.reader.mark()
    profilers = await bench.profile({"dashboard": pid})
    cpu_before, wall_before = proc_cpu_seconds(pid), time.monotonic()
    await bench.offer_at_rate(requests[:cpu_count], config.dashboard_rate)
    elapsed = time.monotonic() - wall_before
    cpu_steady = (proc_cpu_seconds(pid) - cpu_before) / elapsed * 100
    await bench.stop_profile(profilers)
    keys: list[float] = []
    enough = asyncio.Event()
    pressing = asyncio.create_task(_key_latency(terminal, keys, enough))
    await bench.offer_at_rate(requests[cpu_count:steady_count], config.dashboard_rate)
    enough.set()
    await pressing  # finishes the round it is in, so there is at least one
    rest = requests[steady_count:]
    cpu_before, wall_before = proc_cpu_seconds(pid), time.monotonic()
    # RSS as the events go by, a tenth of them at a time: flat, or growing with the stream?
    trail = [(steady_count, _rss_mb(pid))]
    if rest:
        bench.progress(f"    {len(rest):,} more events at full speed for the memory figure")
        step = -(-len(rest) // RSS_SAMPLES)
        for start in range(0, len(rest), step):
            await bench.offer(rest[start : start + step])
            trail.append((steady_count + min(len(rest), start + step), _rss_mb(pid)))
    await bench.reader.wait_count(mark, len(requests), WAIT_APPLIED_S, "the dashboard-phase events to be applied")
    cpu_flat = (proc_cpu_seconds(pid) - cpu_before) / max(1e-3, time.monotonic() - wall_before) * 100 if rest else None
    trail.append((len(requests), _rss_mb(pid)))
    return {
        "rssTrailMB": trail,
        "storedAtEnd": (await bench.lab.stream_info()).state.messages,
        "cpuPercentAtRate": round(cpu_steady, 1),
        "offeredPerSecond": round(cpu_count / elapsed),
        "keyToScreen": spread(keys),
        "cpuPercentFullSpeed": None if cpu_flat is None else round(cpu_flat, 1),
        "rssMB": round(proc_status_kb(pid, "VmRSS") / 1024, 1),
        "peakRssMB": round(proc_status_kb(pid, "VmHWM") / 1024, 1),
        "eventsWhileRunning": len(requests),
    }


async def _key_latency(terminal: TmuxTerminal, keys: list[float], enough: asyncio.Event) -> None:
    """Once a second until `enough`, `?` opens help and `?` closes it: from each key to the screen.

    Not Esc: a terminal cannot tell a lone Esc from the start of an escape sequence, so Textual waits
    ESCDELAY (100 ms) before it takes it as a key; that wait is the terminal's, not the dashboard's."""
    while True:
        for key, shown in (("?", True), ("?", False)):
            pressed = time.monotonic()
            await terminal.send_keys(key)

            async def changed(want: bool = shown) -> bool:
                return await terminal.shows(HELP_MARKER) == want

            await wait_until(changed, 20, f"the screen after {key}", 0.005)
            keys.append(time.monotonic() - pressed)
        try:
            await asyncio.wait_for(enough.wait(), timeout=1.0)
            return
        except asyncio.TimeoutError:
            pass


def dashboard_unavailable() -> str | None:
    """Why the dashboard cannot be measured here, or None."""
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    return None


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    return round(proc_status_kb(pid, "VmRSS") / 1024, 1)


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LabError(f"/proc/{pid}/status has no {key}")


class TmuxTerminal:
    """A private tmux server (its own socket) holding one pane; the screen is read with capture-pane."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.pid: int | None = None
        self.started = False
        self._watchdog: asyncio.subprocess.Process | None = None

    async def _tmux(self, *args: str, check: bool = True) -> str:
        """Run a tmux command; its output. The output goes through files, not pipes: the tmux server
        that `new-session` starts can inherit a pipe from uvloop's spawn and keep it open for good."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = await asyncio.create_subprocess_exec(
                "tmux", "-L", self.socket, "-f", "/dev/null", *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            )  # fmt: skip
            await asyncio.wait_for(process.wait(), timeout=10)
            out.seek(0)
            err.seek(0)
            text, problem = out.read().decode(), err.read().decode()
        if check and process.returncode != 0:
            raise LabError(f"tmux {args[0]}: {problem.strip()}")
        return text

    async def start(self, command: list[str], size: tuple[int, int]) -> int:
        columns, rows = size
        env = ["-e", "TERM=xterm-256color", "-e", "COLORTERM=truecolor"]
        # COLUMNS and LINES, when the environment has them (a detached tmux under pytest sets 80x24),
        # would override the pane's real size; `env` execs, so the pane's pid stays the dashboard's.
        unset = ["env", "-u", "COLUMNS", "-u", "LINES"]
        # Before the command: one that fails or times out may still have started the server, which
        # `stop` must then end (its kill-server hangs up on the dashboard).
        self.started = True
        await self._tmux(
            "new-session", "-d", "-s", "bench", "-x", str(columns), "-y", str(rows), *env, *unset, *command
        )  # fmt: skip
        self.pid = int((await self._tmux("display-message", "-p", "-t", "bench", "#{pane_pid}")).strip())
        # tmux daemonizes, so the dashboard is not our child and would outlive a killed benchmark: a
        # watchdog that dies with us (and is told so by the kernel) ends it and this tmux server.
        self._watchdog = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashboard.commands.bench", "watchdog", str(self.pid), self.socket,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        return self.pid

    async def capture(self) -> str:
        return await self._tmux("capture-pane", "-p", "-t", "bench", check=False)

    async def shows(self, *markers: str) -> bool:
        screen = await self.capture()
        return all(marker in screen for marker in markers)

    async def send_keys(self, key: str) -> None:
        await self._tmux("send-keys", "-t", "bench", key)

    async def stop(self) -> None:
        """`q` quits the dashboard; SIGKILL by pid if it does not; then this tmux server goes."""
        if not self.started:
            return
        if self._watchdog is not None and self._watchdog.returncode is None:
            self._watchdog.kill()  # its job is only for when we die first
            await self._watchdog.wait()
        pid = self.pid
        if pid is not None and _alive(pid):
            await self._tmux("send-keys", "-t", "bench", "q", check=False)
            try:
                await wait_until(lambda: not _alive(pid), 10, "the dashboard to quit", 0.05)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        await self._tmux("kill-server", check=False)
        self.started = False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def watchdog(dashboard_pid: int, socket: str) -> None:
    """Wait for SIGTERM (sent by the kernel when the benchmark dies); then end the dashboard and tmux."""
    signal.sigwait({signal.SIGTERM})
    try:
        os.kill(dashboard_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "kill-server"], capture_output=True, timeout=10)
