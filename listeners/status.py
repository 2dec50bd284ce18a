"""The listener status contract: what each listener publishes on `natslab.status.<name>`.

A listener publishes its status after every processed batch and at least twice a second; the dashboard
and the scenarios read it. Control commands for fault injection arrive on `natslab.control.<name>`.
"""

from __future__ import annotations

STATUS_SUBJECT_PREFIX = "natslab.status"
CONTROL_SUBJECT_PREFIX = "natslab.control"
STATUS_INTERVAL_S = 0.5

CONTROL_COMMANDS = ("crash-after-commit", "crash-before-commit", "slow MS", "normal")


def status_subject(name: str) -> str:
    return f"{STATUS_SUBJECT_PREFIX}.{name}"


def control_subject(name: str) -> str:
    return f"{CONTROL_SUBJECT_PREFIX}.{name}"


def parse_control(text: str) -> tuple[str, int]:
    """`slow 500` -> ("slow", 500); raises ValueError for anything else than CONTROL_COMMANDS."""
    parts = text.strip().split()
    if not parts:
        raise ValueError("empty control command")
    command = parts[0]
    if command in ("crash-after-commit", "crash-before-commit", "normal") and len(parts) == 1:
        return command, 0
    if command == "slow" and len(parts) == 2 and parts[1].isdigit():
        return command, int(parts[1])
    raise ValueError(f"unknown control command {text!r}; expected one of: {', '.join(CONTROL_COMMANDS)}")


def failure_prefix(name: str) -> str:
    """How the one line a failed listener process leaves on stderr starts; the supervisor shows the rest."""
    return f"natslab listener {name}: "
