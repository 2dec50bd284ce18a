"""How listener states and delivery outcomes look, shared by the panes that show them."""

from __future__ import annotations

STATE_STYLES = {
    "running": "green",
    "slow": "yellow",
    "paused": "bold yellow",
    "killed": "bold yellow",  # what the user (or a scenario) did: not a fault
    "crashed": "bold red",
    "disconnected": "red",
    "reconnecting": "yellow",
    "no leader": "yellow",  # its consumer elects a leader (a cluster's node died): it asks again
    "starting": "cyan",
    "restarting": "cyan",
    "draining": "dim",
    "stopped": "dim",
    "exited": "dim",
}

OUTCOME_STYLES = {
    "applied": "green",
    "rejected": "blue",  # a correct outcome: the balance was too low
    "duplicate": "cyan",
    "deferred": "yellow",
    "poison": "bold red",
    "conflict": "bold red",
    "parked": "bold red",
}

OUTCOME_MARKS = {
    "applied": "✓", "rejected": "⊘", "duplicate": "=", "deferred": "↻", "poison": "☠", "conflict": "≠", "parked": "‖",
}  # fmt: skip


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "")


def outcome_style(outcome: str) -> str:
    return OUTCOME_STYLES.get(outcome, "")
