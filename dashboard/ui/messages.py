"""What the dashboard's workers and the lab's callbacks tell the app: past-tense messages.

High-rate ones do not bubble, and a pending one is replaced by a newer one where only the latest
counts (`can_replace`), so a busy lab never floods the message queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from dashboard.lab.checker import CheckReport
from dashboard.lab.lab import LabState
from dashboard.lab.observe import ChannelStats, PartitionsSeen
from dashboard.lab.protocol import HostState
from dashboard.lab.supervisor import Member
from dashboard.ui.view import ConsumerView
from listeners.accounts import AccountRow
from listeners.status import ListenerStatus
from publisher.service import PublishResult


@dataclass
class LabAttached(Message):
    """The dashboard is attached to a lab: one it started (`hosting`), or another's."""

    state: HostState
    hosting: bool


@dataclass
class LabUnreachable(Message):
    """No lab to attach to yet (none runs, NATS cannot be reached); the start worker tries again.
    `waiting`: only no lab answers yet, nothing is wrong; `starting`: and one is on its way."""

    error: str
    waiting: bool = False
    starting: bool = False


@dataclass
class LabLost(Message):
    """The lab's host stopped, or fell silent: the dashboard waits for a lab again."""

    reason: str


@dataclass
class HostChanged(Message, bubble=False):
    """The host's own state (its trickle, its scenario); only the latest counts."""

    state: HostState

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HostChanged)


@dataclass
class LabChanged(Message, bubble=False):
    """The listener processes, the server or the outbox changed; only the latest state counts."""

    state: LabState

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LabChanged)


@dataclass
class ListenerEnded(Message):
    """A listener process ended by itself (not by a key): the member as it ended."""

    member: Member


@dataclass
class ListenerStatusReceived(Message, bubble=False):
    """A listener's status; many a second, so a pending one without deliveries is replaced."""

    status: ListenerStatus

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, ListenerStatusReceived)
            and message.status.name == self.status.name
            and not message.status.deliveries
            and not self.status.deliveries
        )


@dataclass
class ConsumerInfoFetched(Message, bubble=False):
    consumer: ConsumerView


@dataclass
class ChannelStatsFetched(Message, bubble=False):
    stats: dict[str, ChannelStats]
    at: float


@dataclass
class PartitionsFetched(Message, bubble=False):
    """The partitioned group's partitions (None: the lab has no partitioned stream); only the latest counts."""

    seen: PartitionsSeen | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PartitionsFetched)


@dataclass
class AccountsRead(Message, bubble=False):
    """Each group's account rows, read by a check pass in the same transactions as its verdicts."""

    guarded: list[AccountRow]
    naive: list[AccountRow]
    partitioned: list[AccountRow] | None = None


@dataclass
class PollFailed(Message, bubble=False):
    error: str


@dataclass
class CheckStarted(Message, bubble=False):
    pass


@dataclass
class CheckFinished(Message, bubble=False):
    report: CheckReport | None


@dataclass
class EventPublished(Message):
    result: PublishResult


@dataclass
class BurstPublished(Message):
    count: int


@dataclass
class ListenerControlled(Message):
    done: str


@dataclass
class ServerRestarted(Message):
    pass


@dataclass
class ScenarioStarted(Message):
    name: str
    summary: str
    step_mode: bool


@dataclass
class CaptionSaid(Message):
    """A scenario's next step; `waiting` when the scenario waits for Space before running it."""

    caption: str
    waiting: bool = False


@dataclass
class ScenarioResumed(Message):
    """A step of a scenario run step by step goes on; with `run_rest`, all the remaining ones do."""

    run_rest: bool = False


@dataclass
class ScenarioFinished(Message):
    """The scenario ran to its end; `lesson` says what it showed."""

    lesson: str


@dataclass
class ScenarioFailed(Message):
    """The scenario stopped before its end; `error` says why."""

    error: str


@dataclass
class JobFailed(Message):
    """Something the lab's host started for a key failed (a server restart, the trickle)."""

    what: str
    error: str
