"""The lab's wire protocol: how dashboards (and `natslab down`) talk to the process that hosts a lab.

A lab has one host: the process that started it (`natslab up`, `natslab web`, or a dashboard that
found no lab running). The host answers requests on `CONTROL_SUBJECT` (NATS request/reply, JSON) and
broadcasts on two subjects, so every attached dashboard sees the same lab:

- `STATE_SUBJECT`: the host's state (`HostState`): the listener processes, the server, the outbox,
  the trickle and the scenario; at every change and at least every `HEARTBEAT_S`, so a dashboard that
  attaches late is up to date within a second and one that hears nothing for `SILENT_AFTER_S` knows
  the host is gone.
- `NOTICE_SUBJECT`: what the lab did (`Notice`): an event published, a listener killed, a scenario's
  caption; each dashboard puts it on its timeline or caption.

Listener statuses do not pass through the host: the listeners publish them on their own subjects
(`natslab.status.<name>`), which every dashboard subscribes to. The protocol is in docs/design.md,
"The lab as a service".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.lab.nodes import NodeView
from dashboard.lab.supervisor import Member
from dashboard.lab.waits import LabError
from publisher.events import AccountEvent
from publisher.service import PublishResult

CONTROL_SUBJECT = "natslab.lab.control"
STATE_SUBJECT = "natslab.lab.state"
NOTICE_SUBJECT = "natslab.lab.notice"

# The host's state goes out at least this often; a dashboard that hears nothing for SILENT_AFTER_S,
# while its own connection is up, takes the host for gone. It is longer than a client takes to leave a
# frozen node of a cluster (unanswered pings: see publisher/jetstream.py), so a host whose node was
# paused is not taken for gone while it moves to another one.
HEARTBEAT_S = 1.0
SILENT_AFTER_S = 12.0
# A dashboard whose connection has been down this long, and whose host's lock on the data dir is gone,
# takes the host for dead (it took its embedded server along).
LOST_AFTER_S = 4.0
# How long a request waits for the host's answer (a scenario or a burst is started, not awaited).
REQUEST_TIMEOUT_S = 5.0

# The operations a host answers (`LabService.handle`).
OPS = (
    "ping", "control", "node", "restart-server", "publish", "burst", "trickle", "scenario", "step", "run-rest", "stop",
)  # fmt: skip


class ProtocolError(ValueError):
    """A message that does not follow the protocol (a bad request, a reply from something else)."""


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Who hosts the lab, and what every dashboard needs to show it."""

    pid: int
    hostname: str
    command: str  # `natslab up`, `natslab up (for natslab web)`, `a natslab dashboard`
    data_dir: str
    url: str
    embedded: bool  # the host started the NATS server (so `n` can restart it)
    sync: str | None  # the embedded server's sync mode; None when the server is external
    ack_wait_s: float


@dataclass(slots=True)
class ScenarioState:
    """The scenario the host runs (or ran last): every caption it said, kept so each step stays
    readable, and enough for a dashboard that attaches midway.

    In step mode the scenario waits after each caption until a dashboard asks for the step
    (`waiting`); when it ends, `lesson` says what it showed, or `error` why it stopped.
    """

    name: str
    summary: str
    step_mode: bool
    steps: list[str] = field(default_factory=list)
    waiting: bool = False
    finished: bool = False
    lesson: str = ""
    error: str | None = None

    @property
    def running(self) -> bool:
        return not self.finished


@dataclass(frozen=True, slots=True)
class HostState:
    """Everything the host broadcasts as state, apart from the listeners' own statuses."""

    host: HostInfo
    members: tuple[Member, ...]
    server_state: str  # starting, running, restarting, down, stopped
    connected: bool  # the host's own connection to NATS
    outbox_error: str | None
    trickling: bool
    scenario: ScenarioState | None
    # Every listener process's last counters, as the host folded them (`CounterFold.entries`), so a
    # dashboard that attaches late sums a listener over the processes it never saw: [name, pid, mode, counts].
    counters: tuple[tuple[str, int, str, dict[str, int]], ...] = ()
    # The embedded cluster's nodes (none with one server): process state and role in each asset.
    nodes: tuple[NodeView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, payload: bytes) -> HostState:
        return cls.from_dict(_loads(payload))

    @classmethod
    def from_dict(cls, data: Any) -> HostState:
        try:
            scenario = data["scenario"]
            return cls(
                HostInfo(**data["host"]),
                tuple(Member(**member) for member in data["members"]),
                data["server_state"],
                data["connected"],
                data["outbox_error"],
                data["trickling"],
                ScenarioState(**scenario) if scenario is not None else None,
                tuple((str(name), int(pid), str(mode), dict(counts)) for name, pid, mode, counts in data.get("counters", ())),
                tuple(NodeView.from_dict(node) for node in data.get("nodes", ())),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ProtocolError(f"not a lab state: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the lab did, for every dashboard's timeline or caption.

    `kind` is one of: published (`result`), burst (`count`), controlled (`text`: what was done and
    what it means), ended (`member`: a listener that ended by itself), server-restarted,
    scenario-started (`name`, `summary`, `step_mode`), caption (`text`, `waiting`), resumed (a step
    in step mode goes on), run-rest, scenario-finished (`text`: the lesson), scenario-failed and
    failed (`text`: the error, `what`: the job), trickle (`on`), stopping (`text`: why).
    """

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _dumps({"kind": self.kind, **self.fields})

    @classmethod
    def from_json(cls, payload: bytes) -> Notice:
        data = _loads(payload)
        kind = data.pop("kind", None)
        if not isinstance(kind, str):
            raise ProtocolError("a notice without a kind")
        return cls(kind, data)

    def member(self) -> Member:
        return Member(**self.fields["member"])

    def result(self) -> PublishResult:
        data = dict(self.fields["result"])
        return PublishResult(AccountEvent.from_dict(data.pop("event")), **data)


def result_fields(result: PublishResult) -> dict[str, Any]:
    return {
        "event": result.event.to_dict(),
        "stream_seq": result.stream_seq,
        "by_another_relay": result.by_another_relay,
        "outbox_reason": result.outbox_reason,
    }


def request(op: str, **fields: Any) -> bytes:
    return _dumps({"op": op, **fields})


def parse_request(payload: bytes) -> tuple[str, dict[str, Any]]:
    data = _loads(payload)
    op = data.pop("op", None)
    if op not in OPS:
        raise ProtocolError(f"unknown operation {op!r}; one of: {', '.join(OPS)}")
    return op, data


def reply_ok(done: str = "", **fields: Any) -> bytes:
    return _dumps({"ok": True, "done": done, **fields})


def reply_error(error: str) -> bytes:
    return _dumps({"ok": False, "error": error})


def parse_reply(payload: bytes) -> dict[str, Any]:
    """The reply's fields; LabRequestError with the host's words when it says the request failed."""
    data = _loads(payload)
    if data.get("ok") is True:
        return data
    raise LabRequestError(str(data.get("error") or "the lab refused the request"))


class LabRequestError(LabError):
    """The host could not do what was asked, in its own words (no such listener, not running...)."""


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _loads(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("not a JSON object")
    return data
