"""The checker: does the account database hold its invariants (docs/design.md, "Checker invariants")?

For every user, the guarded database must have processed exactly the events numbered 1..N that were
published, each once, in increasing order, each the very event (by id) published with its number, with
the balance the business rule gives. Events the group has not acknowledged yet (above its consumer's
ack floor) and events still in the outbox are pending, not lost. A number used by two different events
is a conflict, an event parked behind a missing number is parked, and both fail the check. The
partitioned group's database, when there is one, is held to the same invariants (its pending events are
those above the ack floor of the user's partition). The naive database is measured the same way and
reported, never fatal.

`check_data` is pure (hand-made inputs in unit tests); `dashboard.lab.snapshot` gathers its inputs
from the stream, the consumers and the account and transactions databases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.lab.history import StoredEvent
from listeners.partitions import partition_of
from publisher.events import AccountEvent, apply_business_rule

# A group's ack floor: every event of ACCOUNT_EVENTS at or below this seq was acknowledged by the group.
# The partitioned group has one per partition, in partition order: its consumer's ack floor mapped to
# the ACCOUNT_EVENTS seq of the event stored there (None: the partition has no consumer).
Floor = int | tuple[int | None, ...]


def floor_of(floors: dict[str, Floor], mode: str, user: str) -> int | None:
    """The ack floor that tells `user`'s pending events from lost ones in `mode`'s group; None: none
    (every missing event is lost)."""
    floor = floors.get(mode)
    if isinstance(floor, tuple):
        return floor[partition_of(user, len(floor))] if floor else None
    return floor


@dataclass(frozen=True, slots=True)
class AppliedRow:
    user_id: str
    number: int
    outcome: str
    event_id: str | None = None  # None: not compared (hand-made states in tests of other parts)
    stream_seq: int = 0


@dataclass(frozen=True, slots=True)
class ParkedRow:
    user_id: str
    number: int
    stream_seq: int
    parked_at: str


@dataclass(slots=True)
class DatabaseState:
    """What one account database holds: accounts, processed events in commit order, and what it recorded
    instead of applying: poison by stream seq, conflicts by stream seq, parked events not yet resolved."""

    accounts: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (last_number, balance)
    applied: list[AppliedRow] = field(default_factory=list)
    poison_seqs: set[int] = field(default_factory=set)
    conflict_seqs: set[int] = field(default_factory=set)
    parked: list[ParkedRow] = field(default_factory=list)
    present: bool = True
    _by_user: dict[str, list[AppliedRow]] | None = field(default=None, repr=False, compare=False)

    def applied_by_user(self) -> dict[str, list[AppliedRow]]:
        """Processed events per user, in commit order; grouped once, not once per user."""
        if self._by_user is None:
            self._by_user = {}
            for row in self.applied:
                self._by_user.setdefault(row.user_id, []).append(row)
        return self._by_user


@dataclass(slots=True)
class UserVerdict:
    """One user in one database."""

    last_number: int | None
    balance_cents: int | None
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0  # rows for numbers outside 1..N, or for an event never published with that number
    pending: int = 0  # numbers in 1..N not processed yet, still with the group's consumer
    parked: int = 0
    # The account is not what the business rule gives for the events up to its last number, or (with
    # nothing pending) its last number is not N.
    wrong_balance: bool = False

    @property
    def ok_counts(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
            and self.unexpected == 0
            and self.parked == 0
            and not self.wrong_balance
        )


@dataclass(slots=True)
class UserReport:
    user_id: str
    expected_last: int
    expected_balance_cents: int
    unpublished: int
    gap_at: int | None
    guarded: UserVerdict
    naive: UserVerdict | None
    conflicts: int = 0
    partitioned: UserVerdict | None = None  # None: the partitioned group has no database

    def guarded_ok(self) -> bool:
        """Nothing wrong so far: pending events may still move the balance on, a gap or conflict never."""
        return self.guarded.ok_counts and self.gap_at is None and self.conflicts == 0

    def partitioned_ok(self) -> bool:
        """`guarded_ok` for the partitioned group's database."""
        return self.partitioned is None or (self.partitioned.ok_counts and self.gap_at is None and self.conflicts == 0)

    def naive_ok(self) -> bool:
        return self.naive is None or self.naive.ok_counts

    def settled(self, verdict: UserVerdict) -> bool:
        """Nothing of this user is left to process: the balance is final."""
        return verdict.pending == 0 and self.unpublished == 0


@dataclass(slots=True)
class Totals:
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    wrong_balance: int = 0
    pending: int = 0
    parked: int = 0

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
            and self.wrong_balance == 0
            and self.parked == 0
        )


@dataclass(slots=True)
class CheckReport:
    users: list[UserReport]
    stream_events: int
    poison_in_stream: int
    unrecorded_poison: int
    unpublished: int
    guarded: Totals
    naive: Totals | None
    problems: list[str]
    conflicts: int = 0
    snapshot_seq: int = 0  # the stream sequence the check is a snapshot of
    partitioned: Totals | None = None  # None: the partitioned group has no database

    @property
    def pending(self) -> int:
        """Events not yet processed by the guarded group or the partitioned group: still with their
        consumers, or in the outbox."""
        return self.guarded.pending + (self.partitioned.pending if self.partitioned else 0) + self.unpublished

    @property
    def ok(self) -> bool:
        """Verified: no problem and nothing pending."""
        return not self.problems and self.pending == 0

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAILED"
        return "PENDING" if self.pending else "OK"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, verdict=self.verdict, pending=self.pending)
        return data

    def verdict_line(self) -> str:
        g = self.guarded
        line = (
            f"guarded: lost={g.lost} duplicated={g.duplicated} out_of_order={g.out_of_order}"
            f" wrong_balance={g.wrong_balance} conflicts={self.conflicts} parked={g.parked} pending={g.pending}"
            f" poison={self.poison_in_stream} unpublished={self.unpublished}"
        )
        if self.partitioned is not None:
            p = self.partitioned
            line += (
                f" | partitioned: lost={p.lost} duplicated={p.duplicated} out_of_order={p.out_of_order}"
                f" wrong_balance={p.wrong_balance} parked={p.parked} pending={p.pending}"
            )
        if self.naive is not None:
            n = self.naive
            line += (
                f" | naive: lost={n.lost} duplicated={n.duplicated} out_of_order={n.out_of_order}"
                f" wrong_balance={n.wrong_balance} pending={n.pending}"
            )
        return f"{line} | {self.verdict}"


@dataclass(slots=True)
class _Expected:
    """One user's history: per number, the event that counts and every distinct event seen with it."""

    events: dict[int, AccountEvent] = field(default_factory=dict)
    ids: dict[int, dict[str, int]] = field(default_factory=dict)  # number -> event id -> highest stream seq
    from_publisher: set[int] = field(default_factory=set)  # numbers whose event is the publisher's record

    def add(self, event: AccountEvent, stream_seq: int, canonical: bool = False) -> None:
        if canonical or event.number not in self.events:
            self.events[event.number] = event
        if canonical:
            self.from_publisher.add(event.number)
        seqs = self.ids.setdefault(event.number, {})
        seqs[event.id] = max(seqs.get(event.id, 0), stream_seq)


def _expected_events(
    stream: list[StoredEvent], published: list[AccountEvent], published_seqs: dict[str, int]
) -> tuple[dict[str, _Expected], list[StoredEvent]]:
    """Per user, what was published, from the stream and the transactions; and the poison.

    The transactions database is the publisher's own record, so its event is the one that counts for
    its number; the first stored event counts where there is none (events published from outside).
    """
    expected: dict[str, _Expected] = {}
    poison: list[StoredEvent] = []
    for stored in stream:
        if stored.event is None:
            poison.append(stored)
            continue
        expected.setdefault(stored.event.user_id, _Expected()).add(stored.event, stored.stream_seq)
    for event in published:  # published but missing from the stream (purged, lost) is still expected
        expected.setdefault(event.user_id, _Expected()).add(event, published_seqs.get(event.id, 0), canonical=True)
    return expected, poison


def _judge(user: str, history: _Expected, last: int, state: DatabaseState, ack_floor: int | None) -> UserVerdict:
    rows = state.applied_by_user().get(user, [])
    account_last, balance = state.accounts.get(user, (None, None))
    verdict = UserVerdict(account_last, balance)
    counts = Counter(row.number for row in rows)
    verdict.duplicated = sum(count - 1 for count in counts.values() if count > 1)
    verdict.unexpected = sum(
        1
        for row in rows
        # Another event published with the same number is a conflict, reported as such, not counted here.
        if not 1 <= row.number <= last or (row.event_id is not None and row.event_id not in history.ids[row.number])
    )
    parked_numbers = {row.number for row in state.parked if row.user_id == user}
    verdict.parked = len(parked_numbers)
    for number in range(1, last + 1):
        if number in counts or number in parked_numbers:
            continue
        seq = history.ids[number].get(history.events[number].id, 0)
        if ack_floor is not None and seq > ack_floor:
            verdict.pending += 1
        else:
            verdict.lost += 1
    highest = 0
    for row in rows:
        if row.number < highest:
            verdict.out_of_order += 1
        highest = max(highest, row.number)
    return verdict


def check_data(
    stream: list[StoredEvent],
    published: list[AccountEvent],
    unpublished: list[AccountEvent],
    guarded: DatabaseState,
    naive: DatabaseState | None,
    *,
    ack_floors: dict[str, Floor] | None = None,
    published_seqs: dict[str, int] | None = None,
    snapshot_seq: int = 0,
    partitioned: DatabaseState | None = None,
) -> CheckReport:
    """Judge the databases against the history: the guarded one and the partitioned one (None: it has
    none) by every invariant, the naive one measured only. `ack_floors` (mode -> the group's ack floor,
    read before the databases; see `Floor`) tells pending from lost: a missing event above the floor
    has not been acknowledged yet. Without it every missing event is lost."""
    floors = ack_floors or {}
    expected, poison = _expected_events(stream, published, published_seqs or {})
    unpublished_by_user = Counter(event.user_id for event in unpublished)
    parked_by_user = Counter(row.user_id for row in guarded.parked)
    dbs = (("guarded", guarded), ("partitioned", partitioned), ("naive", naive))
    judged = [(mode, db, Totals()) for mode, db in dbs if db is not None]
    users = sorted(set(expected) | set(unpublished_by_user) | {user for _, db, _ in judged for user in db.accounts})
    reports: list[UserReport] = []
    problems: list[str] = []
    conflicts = 0
    for user in users:
        history = expected.get(user, _Expected())
        balance, last, gap_at = 0, 0, None
        balances = [0]  # the balance after 1..k, for each k
        for number in sorted(history.events):
            if number != last + 1:
                gap_at = last + 1
                break
            balance, _ = apply_business_rule(balance, history.events[number])
            balances.append(balance)
            last = number
        user_conflicts = sum(len(ids) - 1 for ids in history.ids.values())
        conflicts += user_conflicts
        verdicts = {mode: _judge(user, history, last, db, floor_of(floors, mode, user)) for mode, db, _ in judged}
        report = UserReport(
            user,
            last,
            balance,
            unpublished_by_user.get(user, 0),
            gap_at,
            verdicts["guarded"],
            verdicts.get("naive"),
            user_conflicts,
            verdicts.get("partitioned"),
        )
        reports.append(report)
        for mode, _, total in judged:
            reached = verdicts[mode].last_number or 0
            tally(verdicts[mode], total, balances[reached] if reached < len(balances) else None, last)
        problems += _user_problems(report, history, guarded, parked_by_user.get(user, 0), floor_of(floors, "guarded", user))
        if partitioned is not None:
            problems += group_problems(report, "partitioned", [row for row in partitioned.parked if row.user_id == user])
    unrecorded = [stored for stored in poison if stored.stream_seq not in guarded.poison_seqs]
    if unrecorded:
        problems.append(unrecorded_poison_problem(len(unrecorded), unrecorded[0].stream_seq))
    if partitioned is not None:
        missed = [stored.stream_seq for stored in poison if stored.stream_seq not in partitioned.poison_seqs]
        if missed:
            problems.append(unrecorded_poison_problem(len(missed), missed[0], "partitioned"))
    totals = {mode: total for mode, _, total in judged}
    return CheckReport(
        reports,
        len(stream),
        len(poison),
        len(unrecorded),
        sum(unpublished_by_user.values()),
        totals["guarded"],
        totals.get("naive"),
        problems,
        conflicts,
        snapshot_seq,
        totals.get("partitioned"),
    )


def tally(verdict: UserVerdict, total: Totals, expected_at_reached: int | None, last: int) -> None:
    """Set `verdict.wrong_balance` and add the verdict to its group's totals. `expected_at_reached` is
    the balance the rule gives after 1..k for the database's own last number k (None: k is past N)."""
    total.lost += verdict.lost
    total.duplicated += verdict.duplicated + verdict.unexpected
    total.out_of_order += verdict.out_of_order
    total.pending += verdict.pending
    total.parked += verdict.parked
    reached = verdict.last_number or 0
    verdict.wrong_balance = (
        expected_at_reached is None
        or expected_at_reached != (verdict.balance_cents or 0)
        or (verdict.pending == 0 and reached != last)
    )
    total.wrong_balance += verdict.wrong_balance


def unrecorded_poison_problem(count: int, first_seq: int, group: str = "guarded") -> str:
    where = "" if group == "guarded" else f" in the {group} database"
    return f"{count} malformed events are not recorded as poison{where} (first at stream seq {first_seq})"


@dataclass(frozen=True, slots=True)
class SharedNumber:
    """A number published for several events: each id with its highest stream seq (in the order the
    history shows them), the id the expected balance counts, and whether that is the publisher's."""

    number: int
    ids: dict[str, int]
    counted: str
    from_publisher: bool


def user_problems(
    report: UserReport,
    shared: list[SharedNumber],
    applied_ids: set[tuple[int, str | None]],
    conflict_seqs: set[int],
    parked_rows: list[ParkedRow],
    ack_floor: int | None,
) -> list[str]:
    """One user's problem lines, from what the check found: the numbers shared by several events (in
    increasing order), what the guarded group processed (number, id), the stream seqs it recorded as
    conflicts, and its parked rows of that user (in the database's order)."""
    user = report.user_id
    problems = []
    if report.gap_at is not None:
        problems.append(f"{user}: number {report.gap_at} is missing from the stream; later events cannot be applied")
    for entry in shared:
        events = ", ".join(
            f"{event_id} (stream seq {seq}, {_fate(seq, (entry.number, event_id) in applied_ids, conflict_seqs, ack_floor)})"
            for event_id, seq in entry.ids.items()
        )
        source = "the publisher's transactions.db" if entry.from_publisher else "the first stored"
        problems.append(
            f"{user}: number {entry.number} was published for {len(entry.ids)} different events: {events};"
            f" the expected balance counts {entry.counted} ({source})"
        )
    return problems + group_problems(report, "guarded", parked_rows)


def group_problems(report: UserReport, group: str, parked_rows: list[ParkedRow]) -> list[str]:
    """One user's problem lines of a group held to the invariants ("guarded" or "partitioned"): its
    parked rows of that user, and what its database has wrong (unless the user's gap says it)."""
    user, verdict = report.user_id, report.guarded if group == "guarded" else report.partitioned
    if verdict is None:
        return []
    problems = []
    if parked_rows:
        first = min(parked_rows, key=lambda row: row.number)
        where = "" if group == "guarded" else f" in the {group} group"
        problems.append(
            f"{user}: {len(parked_rows)} events parked{where} since {first.parked_at}, waiting for"
            f" #{(verdict.last_number or 0) + 1} (first parked: #{first.number}, stream seq {first.stream_seq})"
        )
    v = verdict
    if (v.lost or v.duplicated or v.unexpected or v.out_of_order or v.wrong_balance) and report.gap_at is None:
        problems.append(
            f"{user}: {group} has last={v.last_number or 0} balance={v.balance_cents or 0}, expected"
            f" last={report.expected_last} balance={report.expected_balance_cents} (lost={v.lost}"
            f" duplicated={v.duplicated} unexpected={v.unexpected} out_of_order={v.out_of_order})"
        )
    return problems


def _fate(seq: int, applied: bool, conflict_seqs: set[int], ack_floor: int | None) -> str:
    """What the guarded group did with one of the events that share a number."""
    if applied:
        return "applied"
    if seq in conflict_seqs:
        return "recorded as a conflict"
    if ack_floor is not None and seq > ack_floor:
        return "not processed yet"
    return "neither applied nor recorded as a conflict"


def _user_problems(
    report: UserReport, history: _Expected, guarded: DatabaseState, parked: int, ack_floor: int | None
) -> list[str]:
    shared = [
        SharedNumber(number, ids, history.events[number].id, number in history.from_publisher)
        for number, ids in sorted(history.ids.items())
        if len(ids) > 1
    ]
    applied_ids = {(row.number, row.event_id) for row in guarded.applied_by_user().get(report.user_id, [])}
    parked_rows = [row for row in guarded.parked if row.user_id == report.user_id] if parked else []
    return user_problems(report, shared, applied_ids, guarded.conflict_seqs, parked_rows, ack_floor)
