"""Where natslab's processes write their logs: `logs/` in the data dir, one file per process.

Never the terminal: the dashboard owns it. A listener writes `listener-<name>.log` through logging,
and its stdout and stderr go to `listener-<name>.out`, whose last line says why it ended.
"""

from __future__ import annotations

import logging
from pathlib import Path

LOGS = "logs"
FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def log_path(data_dir: Path, process: str, suffix: str = ".log") -> Path:
    return data_dir / LOGS / f"{process}{suffix}"


def listener_log(data_dir: Path, name: str, suffix: str = ".log") -> Path:
    """The log (`.log`) or the captured output (`.out`) of listener `name`."""
    return log_path(data_dir, f"listener-{name}", suffix)


def log_to_file(path: Path) -> logging.Handler:
    """Send this process's logging (INFO and up, and warnings) to `path`; returns the handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler
