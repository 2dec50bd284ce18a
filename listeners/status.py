"""The listener status and control contracts (docs/design.md, "Listener status" and "Listener control").

A listener publishes a `ListenerStatus` as JSON on `natslab.status.<name>`: soon after each batch it
settles (at most 20 a second) and at least every `STATUS_INTERVAL_S` otherwise. The lab parses it
once, where it arrives (`ListenerStatus.from_json`); everything after that reads typed fields.
Fault-injection commands arrive on `natslab.control.<name>`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any

from publisher.events import USER_ID_RE, format_cents

STATUS_SUBJECT_PREFIX = "natslab.status"
CONTROL_SUBJECT_PREFIX = "natslab.control"
STATUS_INTERVAL_S = 0.5

CONTROL_COMMANDS = ("crash-after-commit", "slow MS", "slow-user USER MS", "normal")


def status_subject(name: str) -> str:
    return f"{STATUS_SUBJECT_PREFIX}.{name}"


def control_subject(name: str) -> str:
    return f"{CONTROL_SUBJECT_PREFIX}.{name}"


def parse_control(text: str) -> tuple[str, int, str | None]:
    """`slow 500` -> ("slow", 500, None), `slow-user jim 500` -> ("slow-user", 500, "jim"); raises
    ValueError for anything else than CONTROL_COMMANDS."""
    parts = text.strip().split()
    if not parts:
        raise ValueError("empty control command")
    command = parts[0]
    if command in ("crash-after-commit", "normal") and len(parts) == 1:
        return command, 0, None
    if command == "slow" and len(parts) == 2 and parts[1].isdigit():
        return command, int(parts[1]), None
    if command == "slow-user" and len(parts) == 3 and USER_ID_RE.fullmatch(parts[1]) and parts[2].isdigit():
        return command, int(parts[2]), parts[1]
    raise ValueError(f"unknown control command {text!r}; expected one of: {', '.join(CONTROL_COMMANDS)}")


def failure_prefix(name: str) -> str:
    """How the one line a failed listener process leaves on stderr starts; the supervisor shows the rest."""
    return f"natslab listener {name}: "


# -- reading JSON that another process wrote -----------------------------------------------------------


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """`data[key]` when it has the right type, `default` when it is absent or null; ValueError otherwise."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"status field {key!r} is {value!r}")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Counts:
    """What one listener process has done since it started; a new process starts from zero."""

    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    deferred: int = 0
    poison: int = 0
    redelivered: int = 0  # deliveries with a delivery count above one, early events handed back included
    conflicts: int = 0  # another event with a number already processed: recorded, never applied
    parked: int = 0  # early events whose predecessor did not come within the gap timeout
    unparked: int = 0  # parked events resolved once their predecessor came

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> Counts:
        data = _object(data or {}, "counters")
        return cls(**{f.name: _field(data, f.name, int, 0) for f in fields(cls)})

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


COUNTERS = tuple(f.name for f in fields(Counts))

# How long `DeliveryReport.rule()` may be: it shares a timeline row with the event and its outcome.
RULE_WIDTH = 34
# The rule facts of a settled delivery: JSON key, attribute.
_FACTS = (
    ("lastBefore", "last_before"),
    ("lastAfter", "last_after"),
    ("balanceBefore", "balance_before"),
    ("balanceAfter", "balance_after"),
    ("usedBy", "used_by"),
)


def _fit(*wordings: str) -> str:
    """The first wording that fits RULE_WIDTH, longest first; the last one cut short if none does."""
    for text in wordings:
        if len(text) <= RULE_WIDTH:
            return text
    return wordings[-1][: RULE_WIDTH - 1] + "…"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One delivery of one stream message, as a listener reports it: held (in flight) or settled.

    A poison delivery has no event fields; it names its subject and why it is poison. A settled one
    also has the listener's own running number `seq`, its `outcome` and the UTC time `at`, and the
    facts of the rule that gave that outcome (None where they do not apply or are not known: a held
    delivery, or a message from a listener older than these fields). `rule()` says them in words.
    """

    stream_seq: int
    delivery_count: int
    event_id: str | None = None
    user_id: str | None = None
    number: int = 0
    type: str = ""
    amount_cents: int = 0
    subject: str | None = None
    reason: str | None = None
    seq: int = 0
    outcome: str | None = None
    at: str = ""
    # The user's last number before and after the outcome: the guard's facts, so absent for the naive
    # group, which has no number rule. A deferred or parked event waits for `last_before + 1`.
    last_before: int | None = None
    last_after: int | None = None
    # The balance before and after, in cents, for an applied or rejected event (both groups).
    balance_before: int | None = None
    balance_after: int | None = None
    used_by: str | None = None  # a conflict: the id of an event processed at its number, if one was recorded

    @property
    def poison(self) -> bool:
        return self.user_id is None

    @property
    def missing(self) -> int | None:
        """The number a deferred or parked event waits for."""
        if self.outcome in ("deferred", "parked") and self.last_before is not None:
            return self.last_before + 1
        return None

    def rule(self) -> str:
        """The rule that gave the outcome, in words that fit a timeline row (at most RULE_WIDTH
        characters): `last 1 → 2 · $70 → $110`, `waiting for #2 (last is 1)`, ... Empty when the facts
        are not known."""
        n, before, after = self.number, self.last_before, self.last_after
        if self.outcome == "poison":
            return _fit(self.reason or "invalid message")
        if self.outcome == "rejected" and self.balance_before is not None:
            balance, amount = format_cents(self.balance_before), format_cents(self.amount_cents)
            return _fit(f"balance {balance} < {amount}", f"{balance} < {amount}")
        if self.outcome == "applied" and self.balance_before is not None and self.balance_after is not None:
            was, now = format_cents(self.balance_before), format_cents(self.balance_after)
            if before is None or after is None:  # the naive group: no number rule, it takes what comes
                return _fit(
                    f"applied as it came · {was} → {now}",
                    f"as it came · {was} → {now}",
                    f"as it came · now {now}",
                    "applied as it came",
                )
            return _fit(
                f"last {before} → {after} · {was} → {now}",
                f"last {before} → {after} · now {now}",
                f"last {before} → {after}",
            )
        if before is None:
            return ""
        if self.outcome == "deferred":
            return _fit(f"waiting for #{before + 1} (last is {before})", f"waiting for #{before + 1}")
        if self.outcome == "parked":
            return _fit(
                f"parked: #{before + 1} missing (last is {before})",
                f"#{before + 1} missing (last is {before})",
                f"#{before + 1} missing",
            )
        if self.outcome == "duplicate":
            return _fit(f"#{n} already applied (last {before})", f"#{n} already applied")
        if self.outcome == "conflict":
            return _fit(f"#{n} already used by another event", f"#{n} used by another event", f"#{n} already used")
        return ""

    def describe(self) -> str:
        """`jim #3 withdraw $100`; poison shows its subject (`poison deposit.eve`)."""
        if self.user_id is None:
            return f"poison {(self.subject or '?').removeprefix('account.')}"
        return f"{self.user_id} #{self.number} {self.type.split(':')[-1]} {format_cents(self.amount_cents)}"

    def settled(
        self,
        seq: int,
        outcome: str,
        at: str,
        *,
        last_before: int | None = None,
        last_after: int | None = None,
        balance_before: int | None = None,
        balance_after: int | None = None,
        used_by: str | None = None,
    ) -> DeliveryReport:
        """This delivery with its outcome and the facts of the rule that gave it."""
        return replace(
            self,
            seq=seq,
            outcome=outcome,
            at=at,
            last_before=last_before,
            last_after=last_after,
            balance_before=balance_before,
            balance_after=balance_after,
            used_by=used_by,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"streamSeq": self.stream_seq, "deliveryCount": self.delivery_count}
        if self.user_id is not None:
            data.update(
                id=self.event_id, userId=self.user_id, number=self.number, type=self.type, amountCents=self.amount_cents
            )
        else:
            data.update(subject=self.subject, reason=self.reason)
        if self.outcome is not None:
            data.update(seq=self.seq, outcome=self.outcome, at=self.at)
        # Only the facts that are known: older readers ignore them, and a busy status stays small.
        for key, attribute in _FACTS:
            value = getattr(self, attribute)
            if value is not None:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: Any) -> DeliveryReport:
        data = _object(data, "a delivery")
        return cls(
            stream_seq=_field(data, "streamSeq", int, 0),
            delivery_count=_field(data, "deliveryCount", int, 0),
            event_id=_field(data, "id", str),
            user_id=_field(data, "userId", str),
            number=_field(data, "number", int, 0),
            type=_field(data, "type", str, ""),
            amount_cents=_field(data, "amountCents", int, 0),
            subject=_field(data, "subject", str),
            reason=_field(data, "reason", str),
            seq=_field(data, "seq", int, 0),
            outcome=_field(data, "outcome", str),
            at=_field(data, "at", str, ""),
            last_before=_field(data, "lastBefore", int),
            last_after=_field(data, "lastAfter", int),
            balance_before=_field(data, "balanceBefore", int),
            balance_after=_field(data, "balanceAfter", int),
            used_by=_field(data, "usedBy", str),
        )


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    """A listener process's own account of itself (docs/design.md, "Listener status")."""

    name: str
    pid: int
    mode: str
    group: str
    state: str  # starting, running, slow, reconnecting, no leader, disconnected, draining, stopped
    defer: str = "nak"
    slow_ms: int = 0
    crash_armed: str | None = None  # "after-commit" once a crash is armed
    slow_user: str | None = None  # a user whose every event takes `slow_user_ms` to process
    slow_user_ms: int = 0
    counters: Counts = field(default_factory=Counts)
    in_flight_count: int = 0
    in_flight: tuple[DeliveryReport, ...] = ()  # the first few of `in_flight_count`
    in_flight_since: float | None = None  # Unix time of the fetch that brought what is held
    last_event: DeliveryReport | None = None
    deliveries: tuple[DeliveryReport, ...] = ()  # settled since the previous status
    ts: str = ""
    # The partitioned group: partition -> the pin the server gave this listener for it (its owner).
    partitions: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "pid": self.pid,
                "mode": self.mode,
                "group": self.group,
                "defer": self.defer,
                "state": self.state,
                "slowMs": self.slow_ms,
                "crashArmed": self.crash_armed,
                "slowUser": self.slow_user,
                "slowUserMs": self.slow_user_ms,
                "counters": self.counters.to_json(),
                "inFlightCount": self.in_flight_count,
                "inFlight": [d.to_json() for d in self.in_flight],
                "inFlightSince": self.in_flight_since,
                "lastEvent": None if self.last_event is None else self.last_event.to_json(),
                "deliveries": [d.to_json() for d in self.deliveries],
                "ts": self.ts,
                "partitions": {str(p): pin for p, pin in self.partitions.items()},
            }
        ).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> ListenerStatus:
        """Parse a status message; ValueError when it is not one."""
        data = _object(json.loads(payload), "a status")
        name = _field(data, "name", str)
        if not name:
            raise ValueError("status without a name")
        last = data.get("lastEvent")
        since = _field(data, "inFlightSince", (int, float))
        return cls(
            name=name,
            pid=_field(data, "pid", int, 0),
            mode=_field(data, "mode", str, "guarded"),
            group=_field(data, "group", str, ""),
            state=_field(data, "state", str, "running"),
            defer=_field(data, "defer", str, "nak"),
            slow_ms=_field(data, "slowMs", int, 0),
            crash_armed=_field(data, "crashArmed", str),
            slow_user=_field(data, "slowUser", str),
            slow_user_ms=_field(data, "slowUserMs", int, 0),
            counters=Counts.from_json(data.get("counters")),
            in_flight_count=_field(data, "inFlightCount", int, 0),
            in_flight=tuple(DeliveryReport.from_json(d) for d in _field(data, "inFlight", list, [])),
            in_flight_since=None if since is None else float(since),
            last_event=None if last is None else DeliveryReport.from_json(last),
            deliveries=tuple(DeliveryReport.from_json(d) for d in _field(data, "deliveries", list, [])),
            ts=_field(data, "ts", str, ""),
            partitions=_partitions(data.get("partitions")),
        )


def _partitions(value: Any) -> dict[int, str]:
    if not isinstance(value, dict):
        return {}
    return {int(p): pin for p, pin in value.items() if str(p).isdigit() and isinstance(pin, str)}


class CounterFold:
    """Listener counters summed over every process seen, dead ones too.

    A restarted listener is a new process that counts from zero; keeping each process's last counts
    makes the totals only ever go up (unlike the server's `redelivered`, which falls as acks arrive).
    The lab, the dashboard's view and the scenarios all count with this.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[str, Counts]] = {}

    def add(self, status: ListenerStatus) -> None:
        self._last[(status.name, status.pid)] = (status.mode, status.counters)

    def entries(self) -> list[tuple[str, int, str, Counts]]:
        """(name, pid, mode, counts) of every process seen: what a late observer needs to fold too."""
        return [(name, pid, mode, counts) for (name, pid), (mode, counts) in self._last.items()]

    def learn(self, name: str, pid: int, mode: str, counts: Counts) -> None:
        """Counts of a process seen by someone else; a status of its own seen here is newer and stays."""
        self._last.setdefault((name, pid), (mode, counts))

    def totals(self, *, name: str | None = None, mode: str | None = None) -> Counts:
        total = Counts()
        for (listener, _pid), (listener_mode, counts) in self._last.items():
            if (name is None or listener == name) and (mode is None or listener_mode == mode):
                total += counts
        return total

    def total(self, counter: str, *, name: str | None = None, mode: str | None = None) -> int:
        return getattr(self.totals(name=name, mode=mode), counter)


def read_status(payload: bytes, subject: str) -> ListenerStatus | None:
    """A status message as its subscribers take it: None, with a warning in the log, when malformed."""
    try:
        return ListenerStatus.from_json(payload)
    except ValueError as exc:
        logging.getLogger(__name__).warning("malformed status on %s: %s", subject, exc)
        return None
