"""The scratch data dir of a command that runs a lab of its own (`scenario`, `chaos`, `bench`).

Such a command starts a fresh embedded server in a new temporary data dir and logs to
`logs/<command>.log` there. The dir goes away when the command reports success; otherwise it is kept,
and stderr says where, so a failure can be looked into.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dashboard.lab.logs import log_path, log_to_file
from dashboard.lab.settings import Settings


@dataclass(slots=True)
class Scratch:
    data_dir: Path
    ok: bool = False  # set by the command when its run succeeded: the dir can go


@contextmanager
def scratch_data_dir(command: str, settings: Settings, *, keep: bool = False) -> Iterator[Scratch]:
    """Point `settings` at a fresh data dir and the embedded server; clean up or keep the dir after."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"natslab-{command}-"))
    settings.data_dir, settings.nats_url = data_dir, None
    handler = log_to_file(log_path(data_dir, command))
    scratch = Scratch(data_dir)
    try:
        yield scratch
    except BaseException:
        print(f"natslab {command}: failed; its data and logs are in {data_dir}", file=sys.stderr, flush=True)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if scratch.ok and not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"data and logs kept in {data_dir}", file=sys.stderr, flush=True)
