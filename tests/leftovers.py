"""Finding processes a test left running, through /proc: by a marker in their environment, or by
text in their command line (a temporary directory only that test used)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

# The environment variable that marks the processes a test starts, with the test's own token.
PROCESS_MARK = "NATSLAB_TEST_RUN"


def _live(accept: Callable[[Path, str], bool]) -> dict[int, str]:
    """pid -> command line of the live processes (zombies excluded) that `accept(proc_dir, command)`."""
    found: dict[int, str] = {}
    for pid, proc in _processes():
        try:
            if (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if accept(proc, command):
                found[pid] = command
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def _processes() -> Iterator[tuple[int, Path]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield int(entry.name), Path(entry.path)


def running_with(text: str) -> dict[int, str]:
    """Live processes whose command line mentions `text`: pid -> command line."""
    return _live(lambda _proc, command: text in command)


def processes_marked(token: str) -> dict[int, str]:
    """Live processes whose environment has PROCESS_MARK=token: pid -> command line."""
    needle = f"\0{PROCESS_MARK}={token}\0".encode()
    return _live(lambda proc, _command: needle in b"\0" + (proc / "environ").read_bytes())
