"""Settings shared by every natslab command: one object, built from CLI flags with env fallbacks."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dashboard.lab.logs import LOGS
from dashboard.lab.natsserver import DEFAULT_SYNC
from listeners.groups import DEFAULT_ACK_WAIT_S
from listeners.partitions import DEFAULT_PARTITIONS
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S

URL_FILE = "nats.url"
# What the data dir's lab ran on (one server or a cluster): its databases match that store only.
TOPOLOGY_FILE = "topology"


def default_data_dir() -> Path:
    return Path(os.environ.get("NATSLAB_DATA_DIR") or platformdirs.user_data_path("natslab"))


def unwritable_reason(data_dir: Path) -> str | None:
    """Why natslab could not write in `data_dir`, or create it, or None when it can; found without
    writing anything (the permission bits, a read-only mount, a file in the way)."""
    target = data_dir.absolute()
    try:
        existing = next(path for path in (target, *target.parents) if path.exists())
        if not existing.is_dir():
            return "it is not a directory" if existing == target else f"{existing} is not a directory"
        if os.access(existing, os.W_OK | os.X_OK):
            return None
        why = "read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
        return why if existing == target else f"cannot create it in {existing} ({why})"
    except OSError as exc:
        return exc.strerror or str(exc)


@dataclass(slots=True)
class Settings:
    data_dir: Path
    nats_url: str | None = None
    ack_wait_s: float = DEFAULT_ACK_WAIT_S
    listeners: int = 2
    naive: int = 1
    partitioned: int = 2
    # Partitions of the partitioned group (listeners/partitions.py); fixed for the life of the data.
    partitions: int = DEFAULT_PARTITIONS
    defer: str = "nak"
    batch: int = 100
    # How long a command keeps trying an unreachable NATS before it gives up.
    nats_timeout_s: float = DEFAULT_NATS_TIMEOUT_S
    # How long the guard waits for a missing number before parking the events behind it; None: 10 ack waits.
    gap_timeout_s: float | None = None
    # NATSLAB_NATS_URL, checked: the server of the commands that do not start one, after --nats-url.
    env_nats_url: str | None = None
    # How the embedded server flushes JetStream to disk: "always" or "interval" (see natsserver.py).
    sync: str = DEFAULT_SYNC
    # The event loop of the headless processes: "uvloop" or "asyncio" (see dashboard/commands/loops.py).
    loop: str = "asyncio"
    # Nodes of the embedded JetStream cluster (`--cluster 3`); 0 runs one server.
    cluster: int = 0
    # The dashboard only attaches to a running lab and never starts one (`natslab --attach`).
    attach: bool = False
    # The options given that set up a new lab (`--listeners`...): an attached dashboard says it did not use them.
    lab_options: tuple[str, ...] = ()

    @property
    def transactions_db(self) -> Path:
        return self.data_dir / "transactions.db"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def cluster_store_dir(self) -> Path:
        """The cluster's nodes' stores, one folder each (n1, n2...)."""
        return self.data_dir / "nats-cluster"

    @property
    def topology(self) -> str:
        """What runs the lab's NATS, as a data dir remembers it: `one server` or `cluster of 3`."""
        return f"cluster of {self.cluster}" if self.cluster else "one server"

    @property
    def topology_file(self) -> Path:
        return self.data_dir / TOPOLOGY_FILE

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / LOGS

    @property
    def url_file(self) -> Path:
        """Where a running embedded server leaves its URL, so other commands can find it."""
        return self.data_dir / URL_FILE

    def data_dir_option(self) -> str:
        """` --data-dir D` for a command a person is told to run, unless D is the default (then nothing)."""
        if self.data_dir.absolute() == default_data_dir().absolute():
            return ""
        return f" --data-dir {shlex.quote(str(self.data_dir))}"

    def discovered_nats_url(self) -> str | None:
        """`--nats-url`, else `NATSLAB_NATS_URL`, else the URL of an embedded server running on this data dir."""
        url = self.nats_url or self.env_nats_url
        if url:
            return url
        try:
            return self.url_file.read_text().strip() or None
        except OSError:
            return None
