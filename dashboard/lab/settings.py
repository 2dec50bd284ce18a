"""Settings shared by every natslab command: one object, built from CLI flags with env fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dashboard.lab.logs import LOGS
from listeners.groups import DEFAULT_ACK_WAIT_S
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S

URL_FILE = "nats.url"


def default_data_dir() -> Path:
    return Path(os.environ.get("NATSLAB_DATA_DIR") or platformdirs.user_data_path("natslab"))


@dataclass(slots=True)
class Settings:
    data_dir: Path
    nats_url: str | None = None
    ack_wait_s: float = DEFAULT_ACK_WAIT_S
    listeners: int = 2
    naive: int = 1
    defer: str = "nak"
    batch: int = 100
    # How long a command keeps trying an unreachable NATS before it gives up.
    nats_timeout_s: float = DEFAULT_NATS_TIMEOUT_S
    # How long the guard waits for a missing number before parking the events behind it; None: 10 ack waits.
    gap_timeout_s: float | None = None

    @property
    def transactions_db(self) -> Path:
        return self.data_dir / "transactions.db"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / LOGS

    @property
    def url_file(self) -> Path:
        """Where a running embedded server leaves its URL, so other commands can find it."""
        return self.data_dir / URL_FILE

    def discovered_nats_url(self) -> str | None:
        """`--nats-url`, else `NATSLAB_NATS_URL`, else the URL of an embedded server running on this data dir."""
        if self.nats_url:
            return self.nats_url
        env = os.environ.get("NATSLAB_NATS_URL")
        if env:
            return env
        try:
            return self.url_file.read_text().strip() or None
        except OSError:
            return None
