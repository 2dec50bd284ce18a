"""The live checker's state: what it keeps of the history and the databases between passes, so that a
pass reads only what is new and still gives the report `check_data` gives on the whole snapshot.

Per user it keeps a settled prefix 1..base and a window of numbers above it. A number is settled once
the publisher's own event is the only one the history shows with it and every account database judged
has processed it: from then on nothing about it can change the report except a new stream event or
database row at that number, and those are rare (a redelivery to the naive group, a re-publication, a
forged event). For the prefix it keeps one balance (after `base`), not one thing per event; what the
rare late arrivals need (the id the publisher gave a settled number, the balance after a settled
number) is looked up in `transactions.db` by the caller (`settled_keys`, `needed_balances`).

The window holds the numbers not settled yet: normally the events some group has not processed (its
backlog), plus numbers above a gap in the stream, numbers published outside the publisher, and numbers
used by several events. Those are the only per-event memory; each costs a few hundred bytes.

A stream event at a settled number with another id than the publisher's is a conflict the prefix
cannot show: `Restart` is raised, and the caller starts over with a full read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dashboard.lab.checker import (
    CheckReport,
    Floor,
    ParkedRow,
    SharedNumber,
    Totals,
    UserReport,
    UserVerdict,
    floor_of,
    group_problems,
    tally,
    unrecorded_poison_problem,
    user_problems,
)
from dashboard.lab.history import StoredEvent
from publisher.events import AccountEvent, apply_business_rule

GUARDED, NAIVE, PARTITIONED = 0, 1, 2
MODES = ("guarded", "naive", "partitioned")
# The databases held to every invariant, whose poison must be recorded.
JUDGED = (GUARDED, PARTITIONED)
Key = tuple[str, int]  # (user, number)


class Restart(Exception):
    """The increment cannot be folded into the state: start over with a full read."""


class Slot:
    """One number in a user's window: the event that counts, every id seen with it, and what each
    database processed at it."""

    __slots__ = ("event", "ids", "tx_only", "from_publisher", "rows")

    def __init__(self) -> None:
        self.event: AccountEvent | None = None  # the publisher's row, else the first stored event
        # id -> highest stream seq, in the order the stream first showed them (as `check_data` sees them)
        self.ids: dict[str, int] = {}
        self.tx_only: str | None = None  # an id only transactions.db has shown so far: it comes last
        self.from_publisher = False
        self.rows: tuple[list[str], ...] = ([], [], [])  # processed event ids, per database (MODES)

    def add_stored(self, event: AccountEvent, seq: int) -> None:
        if self.event is None:
            self.event = event
        known = self.ids.get(event.id)
        if known is None:
            self.ids[event.id] = seq
        else:
            if event.id == self.tx_only:  # the stream shows it now: it takes its place in stream order
                del self.ids[event.id]
                self.tx_only = None
            self.ids[event.id] = max(known, seq)

    def add_published(self, event: AccountEvent, seq: int) -> None:
        self.event, self.from_publisher = event, True
        known = self.ids.get(event.id)
        if known is None:
            self.ids[event.id] = seq
            self.tx_only = event.id
        else:
            self.ids[event.id] = max(known, seq)

    def ordered_ids(self) -> dict[str, int]:
        if self.tx_only is None:
            return dict(self.ids)
        ordered = {key: seq for key, seq in self.ids.items() if key != self.tx_only}
        ordered[self.tx_only] = self.ids[self.tx_only]
        return ordered


class DbUser:
    """One user in one account database: counts that only grow, folded row by row in commit order."""

    __slots__ = ("highest", "duplicated", "out_of_order", "unexpected")

    def __init__(self) -> None:
        self.highest = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.unexpected = 0  # rows at settled numbers whose id is not the one published with it


class UserState:
    __slots__ = ("base", "base_balance", "slots", "has_history", "dbs", "balances")

    def __init__(self) -> None:
        self.base = 0  # numbers 1..base are settled
        self.base_balance = 0  # the balance the rule gives after 1..base
        self.slots: dict[int, Slot] = {}
        self.has_history = False  # a valid stored event or a published transaction names this user
        self.dbs = (DbUser(), DbUser(), DbUser())
        self.balances: dict[int, int] = {}  # settled k -> balance after 1..k, looked up for a database at k

    def slot(self, number: int) -> Slot:
        found = self.slots.get(number)
        if found is None:
            found = self.slots[number] = Slot()
        return found


@dataclass(slots=True)
class Outbox:
    """What the transactions database holds that is not (yet) part of the history."""

    unpublished: Counter[str] = field(default_factory=Counter)  # user -> rows pending in the outbox
    watch: set[int] = field(default_factory=set)  # rowids to read again: unpublished, or acked past the snapshot


@dataclass(slots=True)
class AccountsSnapshot:
    """What a pass read whole from one account database."""

    present: bool
    accounts: dict[str, tuple[int, int]]
    parked: list[ParkedRow]


class PoisonRecord:
    """The poison of the stream one database has not recorded (yet), and the reverse."""

    __slots__ = ("unrecorded", "recorded_early")

    def __init__(self) -> None:
        self.unrecorded: dict[int, None] = {}  # stream seqs of poison the database has not recorded
        self.recorded_early: set[int] = set()  # recorded poison seqs the stream has not shown (yet)

    def recorded(self, seq: int) -> None:
        if seq in self.unrecorded:
            del self.unrecorded[seq]
        else:
            self.recorded_early.add(seq)

    def stored(self, seq: int) -> None:
        if seq in self.recorded_early:
            self.recorded_early.discard(seq)
        else:
            self.unrecorded[seq] = None


class LiveState:
    """Everything the live checker keeps; pure (the caller reads, this folds and judges)."""

    def __init__(self) -> None:
        self.users: dict[str, UserState] = {}
        self.stream_events = 0
        self.poison = 0
        self.poison_records = {mode: PoisonRecord() for mode in JUDGED}
        self.conflict_seqs: set[int] = set()  # the guarded database's
        self._dirty: set[str] = set()

    def user(self, name: str) -> UserState:
        found = self.users.get(name)
        if found is None:
            found = self.users[name] = UserState()
        return found

    def settled(self) -> int:
        return sum(state.base for state in self.users.values())

    def window(self) -> int:
        return sum(len(state.slots) for state in self.users.values())

    # -- folding -----------------------------------------------------------------------------------

    def settled_keys(self, keys: list[Key]) -> list[Key]:
        """Of (user, number) pairs just read, those at settled numbers: the caller looks up their ids."""
        found = []
        for name, number in keys:
            state = self.users.get(name)
            if state is not None and 1 <= number <= state.base:
                found.append((name, number))
        return found

    def add_applied(self, mode: int, rows: list[tuple[str, int, str]]) -> list[tuple[int, str, int, str]]:
        """Processed-event rows (user, number, event id) in commit order. Returns those at settled
        numbers as (mode, user, number, id): the caller looks up the publisher's id of each and hands
        them to `add_late_rows`, since whether such a row is unexpected depends on it."""
        late = []
        for name, number, event_id in rows:
            state = self.user(name)
            db = state.dbs[mode]
            if number < db.highest:
                db.out_of_order += 1
            if number > db.highest:
                db.highest = number
            if 1 <= number <= state.base:
                db.duplicated += 1  # settled: every judged database has processed it already
                late.append((mode, name, number, event_id))
                continue
            slot = state.slot(number)
            if slot.rows[mode]:
                db.duplicated += 1
            slot.rows[mode].append(event_id)
            self._dirty.add(name)
        return late

    def add_late_rows(self, rows: list[tuple[int, str, int, str]], settled: dict[Key, str]) -> None:
        for mode, name, number, event_id in rows:
            if settled[(name, number)] != event_id:
                self.users[name].dbs[mode].unexpected += 1

    def add_poison_recorded(self, seqs: list[int], mode: int = GUARDED) -> None:
        for seq in seqs:
            self.poison_records[mode].recorded(seq)

    def add_stored(self, stored: list[StoredEvent], settled: dict[Key, str]) -> None:
        """Stream events in stream order; `settled` has the publisher's id of each settled number among them."""
        for item in stored:
            self.stream_events += 1
            event = item.event
            if event is None:
                self.poison += 1
                for record in self.poison_records.values():
                    record.stored(item.stream_seq)
                continue
            state = self.user(event.user_id)
            state.has_history = True
            if event.number <= state.base:
                if settled[(event.user_id, event.number)] != event.id:
                    raise Restart(f"{event.user_id} #{event.number} was published again with another id")
                continue  # published again with its id: nothing the report shows changes
            state.slot(event.number).add_stored(event, item.stream_seq)
            self._dirty.add(event.user_id)

    def add_transactions(self, rows: list[tuple], snapshot: int, outbox: Outbox) -> None:
        """Rows of transactions.db: (rowid, id, type, user, cents, number, created_at, published_at, seq).

        As `run_check` takes them: a row acknowledged at or below the snapshot, or still in the outbox
        but already in the stream, is the publisher's event for its number; one still in the outbox and
        not in the stream is pending there; one acknowledged past the snapshot is not looked at yet.
        """
        for rowid, *fields, published_at, seq in rows:
            event = AccountEvent(*fields)
            state = self.user(event.user_id)
            # A settled number's event is this very row (one row per number), already counted.
            settled = event.number <= state.base
            if published_at is not None:
                if (seq or 0) > snapshot:
                    outbox.watch.add(rowid)
                    continue
                outbox.watch.discard(rowid)
                seq = seq or 0
            else:
                outbox.watch.add(rowid)  # read again while it stays in the outbox
                if settled:
                    continue  # it became the number's event by being in the stream
                slot = state.slots.get(event.number)
                seen = None if slot is None or event.id == slot.tx_only else slot.ids.get(event.id)
                if seen is None:
                    outbox.unpublished[event.user_id] += 1
                    continue
                seq = seen  # sent, not marked yet: the stream's seq
            if settled:
                continue
            state.has_history = True
            state.slot(event.number).add_published(event, seq)
            self._dirty.add(event.user_id)

    def settle(self, naive_present: bool, partitioned_present: bool = False) -> None:
        """Move each changed user's settled prefix up as far as it goes."""
        judged = (GUARDED,) + ((NAIVE,) if naive_present else ()) + ((PARTITIONED,) if partitioned_present else ())
        for name in self._dirty:
            state = self.users[name]
            while True:
                slot = state.slots.get(state.base + 1)
                if (
                    slot is None
                    or slot.event is None
                    or not slot.from_publisher
                    or len(slot.ids) != 1
                    or not all(slot.rows[mode] for mode in judged)
                ):
                    break
                event_id = slot.event.id
                for mode in range(len(MODES)):
                    state.dbs[mode].unexpected += sum(1 for row in slot.rows[mode] if row != event_id)
                state.base_balance, _ = apply_business_rule(state.base_balance, slot.event)
                state.base += 1
                del state.slots[state.base]
        self._dirty.clear()

    def needed_balances(self, accounts: list[AccountsSnapshot]) -> list[Key]:
        """(user, k) for each database whose account stands at a settled number below the prefix's end:
        the caller folds the publisher's events 1..k (`set_balance`)."""
        needed = []
        for snapshot in accounts:
            for name, (last, _) in snapshot.accounts.items():
                state = self.users.get(name)
                if state is not None and 0 < last < state.base and last not in state.balances:
                    needed.append((name, last))
        return needed

    def set_balance(self, name: str, number: int, balance: int) -> None:
        balances = self.users[name].balances
        if len(balances) >= 4:  # a database stands at one number at a time: keep the latest few
            balances.pop(next(iter(balances)))
        balances[number] = balance


# -- judging: check_data's rules on the settled prefix and the window --------------------------------


def build_report(
    live: LiveState,
    floors: dict[str, Floor],
    dbs: tuple[AccountsSnapshot, ...],
    unpublished: Counter[str],
    snapshot_seq: int,
) -> CheckReport:
    """The report `check_data` gives on the same snapshot: `dbs` in MODES order (a partitioned one left
    out is absent), the naive and partitioned databases judged when present."""
    dbs = (*dbs, *(AccountsSnapshot(False, {}, []) for _ in range(len(MODES) - len(dbs))))
    judged = [mode for mode in (GUARDED, PARTITIONED, NAIVE) if mode == GUARDED or dbs[mode].present]
    parked: list[dict[str, list[ParkedRow]]] = [{} for _ in MODES]
    for mode in judged:
        for row in dbs[mode].parked:
            parked[mode].setdefault(row.user_id, []).append(row)
    names = {name for name, state in live.users.items() if state.has_history}
    names |= set(unpublished) | {name for mode in judged for name in dbs[mode].accounts}
    totals: list[Totals | None] = [Totals() if mode in judged else None for mode in range(len(MODES))]
    reports: list[UserReport] = []
    problems: list[str] = []
    conflicts = 0
    empty = UserState()
    for name in sorted(names):
        state = live.users.get(name, empty)
        reached = [(db.accounts.get(name, (None, None))[0] or 0) for db in dbs]
        last, balance, at = _walk(state, set(reached))
        gap_at = last + 1 if any(n > last and s.event is not None for n, s in state.slots.items()) else None
        user_conflicts = sum(len(slot.ids) - 1 for slot in state.slots.values() if len(slot.ids) > 1)
        conflicts += user_conflicts
        verdicts: list[UserVerdict | None] = [None] * len(MODES)
        for mode in judged:
            numbers = {row.number for row in parked[mode].get(name, ())}
            floor = floor_of(floors, MODES[mode], name)
            verdicts[mode] = _judge(name, state, mode, last, dbs[mode].accounts, numbers, floor)
        guarded_verdict = verdicts[GUARDED]
        assert guarded_verdict is not None
        report = UserReport(
            name,
            last,
            balance,
            unpublished.get(name, 0),
            gap_at,
            guarded_verdict,
            verdicts[NAIVE],
            user_conflicts,
            verdicts[PARTITIONED],
        )
        reports.append(report)
        for mode in judged:
            verdict, total = verdicts[mode], totals[mode]
            assert verdict is not None and total is not None
            tally(verdict, total, at.get(reached[mode]), last)
        floor = floor_of(floors, "guarded", name)
        problems += _problems(report, state, parked[GUARDED].get(name, []), live.conflict_seqs, floor)
        if PARTITIONED in judged:
            problems += group_problems(report, "partitioned", parked[PARTITIONED].get(name, []))
    for mode in (mode for mode in JUDGED if mode in judged):
        unrecorded = live.poison_records[mode].unrecorded
        if unrecorded:
            problems.append(unrecorded_poison_problem(len(unrecorded), next(iter(unrecorded)), MODES[mode]))
    guarded_totals = totals[GUARDED]
    assert guarded_totals is not None
    return CheckReport(
        reports,
        live.stream_events,
        live.poison,
        len(live.poison_records[GUARDED].unrecorded),
        sum(unpublished.values()),
        guarded_totals,
        totals[NAIVE],
        problems,
        conflicts,
        snapshot_seq,
        totals[PARTITIONED],
    )


def _walk(state: UserState, reached: set[int]) -> tuple[int, int, dict[int, int]]:
    """The end N of the unbroken run 1..N, the balance after it, and the balance after each k in
    `reached` that is at most N (a k past N has none)."""
    at = {k: state.balances[k] for k in reached if 0 < k < state.base and k in state.balances}
    at[0] = 0
    last, balance = state.base, state.base_balance
    at[last] = balance
    while True:
        slot = state.slots.get(last + 1)
        if slot is None or slot.event is None:
            return last, balance, at
        balance, _ = apply_business_rule(balance, slot.event)
        last += 1
        if last in reached:
            at[last] = balance


def _judge(
    name: str,
    state: UserState,
    mode: int,
    last: int,
    accounts: dict[str, tuple[int, int]],
    parked_numbers: set[int],
    floor: int | None,
) -> UserVerdict:
    account_last, balance = accounts.get(name, (None, None))
    verdict = UserVerdict(account_last, balance)
    db = state.dbs[mode]
    verdict.duplicated, verdict.out_of_order, verdict.parked = db.duplicated, db.out_of_order, len(parked_numbers)
    unexpected = db.unexpected
    for number, slot in state.slots.items():
        rows = slot.rows[mode]
        if rows:
            if not 1 <= number <= last:
                unexpected += len(rows)
            else:
                unexpected += sum(1 for row in rows if row not in slot.ids)
        elif 1 <= number <= last and number not in parked_numbers:
            assert slot.event is not None
            if floor is not None and slot.ids.get(slot.event.id, 0) > floor:
                verdict.pending += 1
            else:
                verdict.lost += 1
    verdict.unexpected = unexpected
    return verdict


def _problems(
    report: UserReport, state: UserState, parked_rows: list[ParkedRow], conflict_seqs: set[int], floor: int | None
) -> list[str]:
    shared = [
        SharedNumber(number, slot.ordered_ids(), slot.event.id, slot.from_publisher)
        for number, slot in sorted(state.slots.items())
        if len(slot.ids) > 1 and slot.event is not None
    ]
    g = report.guarded
    if not (shared or parked_rows or report.gap_at is not None or not g.ok_counts):
        return []
    applied = {(number, row) for number, slot in state.slots.items() for row in slot.rows[GUARDED]} if shared else set()
    return user_problems(report, shared, applied, conflict_seqs, parked_rows, floor)
