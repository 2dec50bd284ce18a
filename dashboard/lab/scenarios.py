"""Scenarios: scripted failures on a running lab, narrated one caption per step.

This module holds the catalogue, the first story (the overtaking withdrawal) and the runner; the
other scenarios' steps are in `failures`. A scenario is an async function of a `Lab` and a `say`
callback. The CLI runs it on a fresh embedded server in a temporary data dir and prints the captions;
the dashboard runs the same function on its own lab and shows the captions on screen, and its `say`
waits for a key before it returns.

So each caption is one step: it says what is about to happen (or what just happened), and the action
it announces runs after `say` returns, however long that took. No step may depend on the time between
two captions: an action whose outcome depends on timing (a kill and the publish that must beat the
redelivery it causes) happens within one step, after its caption. A scenario ends with its `lesson`,
which the CLI prints and the dashboard shows last.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from dashboard.lab.checker import CheckReport
from dashboard.lab.failures import (
    Say,
    crash_after_commit,
    deferred_count,
    kill_in_flight,
    one_copy,
    out_of_order,
    poison,
    publisher_crash,
    server_restart,
    zombie,
)
from dashboard.lab.lab import Lab
from dashboard.lab.node_failures import leader_stepdown, node_failover
from dashboard.lab.partition_scenarios import hot_partition, owner_dies, partitioned_vs_guarded
from dashboard.lab.probes import (
    HOLD_MS,
    account_is,
    alive,
    fresh_user,
    holder_of,
    prepare_listeners,
    wait_drained,
    wait_listeners_ready,
)
from dashboard.lab.settings import Settings
from dashboard.lab.waits import wait_until
from listeners.accounts import AccountRow, Mode
from listeners.groups import GUARDED_GROUP, NAIVE_GROUP
from publisher.events import format_cents


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str  # one line of at most SUMMARY_WIDTH characters: the picker shows it in a column
    lesson: str  # what the run showed, in one or two plain sentences, said after the last caption
    # The steps; a scenario that measures returns one sentence with this run's figures (see `lesson_of`).
    run: Callable[[Lab, Say, random.Random], Awaitable[str | None]]
    listeners: int = 2
    naive: int = 1
    cluster: int = 0  # the nodes of the JetStream cluster it needs; 0: any lab
    # Partitioned listeners the command line's lab starts (a dashboard's lab has its own); with some,
    # `natslab scenario` also shows and checks the partitioned database.
    partitioned: int = 0

    def lesson_of(self, measured: str | None) -> str:
        """What a run showed: the lesson, then the run's own figures when it measured some."""
        return f"{self.lesson} {measured}" if measured else self.lesson


SUMMARY_WIDTH = 70
MODES: tuple[Mode, ...] = ("guarded", "naive")


async def overtaking_withdrawal(lab: Lab, say: Say, rng: random.Random | None = None) -> None:
    """The lecture's example: Jim's withdrawal overtakes his second deposit."""
    assert lab.publisher is not None and lab.supervisor is not None
    ack_wait = lab.settings.ack_wait_s
    await prepare_listeners(lab)
    # Each group needs a listener that survives the kill and takes #3 at once. A restarted one could
    # still be starting when #2 comes back, and the naive group would then get it right by luck.
    for mode in MODES:
        while len(alive(lab, mode)) < 2:
            await lab.control("add", mode=mode)
    await wait_listeners_ready(lab)
    jim, mary = await fresh_user(lab, "jim"), await fresh_user(lab, "mary")
    Jim, Mary = jim.capitalize(), mary.capitalize()
    guarded, naive = ", ".join(alive(lab, "guarded")), ", ".join(alive(lab, "naive"))
    await say(
        f"Guarded listeners {guarded} share the queue group {GUARDED_GROUP.name}: each event goes to one of them."
        f" Naive {naive} do the same job without the guard, in {NAIVE_GROUP.name}."
    )

    await say(f"Publisher: {Mary} deposits $40 ({Mary} #1), {Jim} deposits $70 ({Jim} #1).")
    await lab.publisher.record("deposit", mary, 4000)
    await lab.publisher.record("deposit", jim, 7000)
    for mode in MODES:
        await wait_until(lambda m=mode: account_is(lab, m, jim, 1), 20, f"{Jim} #1 in the {mode} database")
        await wait_until(lambda m=mode: account_is(lab, m, mary, 1), 20, f"{Mary} #1 in the {mode} database")

    await say(f"Every listener slows down, so whoever takes {Jim}'s next deposit, +$40 ({Jim} #2), sits on it.")
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("slow", name, slow_ms=HOLD_MS)
    await lab.publisher.record("deposit", jim, 4000)
    await wait_until(lambda: holder_of(lab, "guarded", jim, 2) is not None, 20, f"a guarded listener to take {Jim} #2")
    await wait_until(lambda: holder_of(lab, "naive", jim, 2) is not None, 20, f"the naive listener to take {Jim} #2")
    slow_guarded = holder_of(lab, "guarded", jim, 2)
    slow_naive = holder_of(lab, "naive", jim, 2)
    assert slow_guarded is not None and slow_naive is not None

    # One step, not two: from the kill on, #2 comes back within one ack wait, and #3 must reach the
    # survivors before that. A caption between the kill and the withdrawal would let a reader's pause
    # decide the story. Until the kill, the slowed holders keep #2 (they report progress to the server).
    await say(
        f"Listener {slow_guarded} holds {Jim}'s +$40 (#2) and dies before acknowledging it (SIGKILL); so does"
        f" naive {slow_naive}. Right after, {Jim} withdraws $100 ({Jim} #3)."
    )
    deferred_before = deferred_count(lab)
    await lab.control("kill", slow_guarded)
    await lab.control("kill", slow_naive)
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("normal", name)
    await lab.publisher.record("withdraw", jim, 10000)
    await wait_until(lambda: deferred_count(lab) > deferred_before, 20, f"a guarded listener to defer {Jim} #3")
    await wait_until(lambda: account_is(lab, "naive", jim, 3), 20, f"a naive listener to process {Jim} #3")
    await say(
        f"Guarded: {Jim} #3 came early (the last number processed is 1), so it was not acknowledged; it comes back later."
    )
    await say(
        f"Naive: {Jim} #3 was processed as it arrived, with no check of its number: $100 is more than {Jim}'s $70,"
        " so the withdrawal was rejected."
    )

    await say(f"After the ack wait ({ack_wait:g} s) NATS redelivers #2; the guard applies #2, then #3.")
    await wait_drained(lab, timeout=ack_wait * 4 + 30)
    await lab.control("restart", slow_guarded)
    await lab.control("restart", slow_naive)
    await wait_listeners_ready(lab)
    ends: dict[Mode, int] = {}
    for mode in MODES:
        ends[mode] = next((row.balance_cents for row in await lab.accounts(mode) if row.user_id == jim), 0)
    await say(
        f"Every event is processed. Guarded {Jim} ends at {format_cents(ends['guarded'])} ($70 + $40 - $100);"
        f" naive {Jim} ends at {format_cents(ends['naive'])}."
    )


async def naive_vs_guarded(lab: Lab, say: Say, rng: random.Random) -> None:
    await say(
        "The same faults hit both groups: a crash after saving, a listener killed holding a deposit, shuffled events."
    )
    await crash_after_commit(lab, say, rng)
    await overtaking_withdrawal(lab, say)
    await out_of_order(lab, say, rng)
    report = await lab.check()
    naive = report.naive
    if naive is not None:
        await say(
            f"Naive damage since the lab started: lost {naive.lost}, applied twice {naive.duplicated},"
            f" out of order {naive.out_of_order}, wrong balances {naive.wrong_balance};"
            f" guarded: {'nothing wrong' if report.guarded.clean else 'BROKEN'}."
        )


# The first one teaches the core lesson; the picker and `--list` show them in this order.
SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "overtaking-withdrawal",
            "a withdrawal overtakes the deposit it needs, held by a dying listener",
            "Redelivery brings the lost deposit back, but after the withdrawal that needed it: arrival order"
            " is not the order of events. Numbering each user's events and applying only the next number"
            " keeps the guarded balance right; the naive group, which applies events as they arrive, gets it wrong.",
            overtaking_withdrawal,
            naive=2,
        ),
        Scenario(
            "kill-in-flight",
            "kill a listener holding events; the others get them after the ack wait",
            "A killed listener loses nothing: what it had not acknowledged goes to the other listeners after"
            " the ack wait, and the user's later events wait for it instead of overtaking it.",
            kill_in_flight,
        ),
        Scenario(
            "zombie",
            "a frozen listener wakes up after its event went to another listener",
            "A listener frozen past the ack wait loses its events to the others, but it does not know it."
            " When it wakes up, the guard sees those numbers are done and drops its stale copies.",
            zombie,
        ),
        Scenario(
            "crash-after-commit",
            "a listener dies between saving an event and acknowledging it",
            "Saving and acknowledging are two steps, so a crash between them brings a saved event back."
            " The guard knows it by its number and id and applies it once; the naive group applies it twice.",
            crash_after_commit,
        ),
        Scenario(
            "out-of-order",
            "one user's events arrive shuffled and are still applied in order",
            "The order events arrive in is not the order they happened in. The guard applies each user's"
            " events strictly by number, so a shuffled stream still ends with the right balance.",
            out_of_order,
        ),
        Scenario(
            "server-restart",
            "the NATS server restarts while events are being delivered and sent",
            "A server restart delays events but loses none: listeners reconnect, and the publisher's outbox"
            " sends every event the server had not confirmed.",
            server_restart,
        ),
        Scenario(
            "publisher-crash",
            "the publisher dies before or after sending; each event arrives once",
            "Writing each event down before sending it (an outbox) means a crashed publisher delays an"
            " event but never loses it, and the event's id lets the stream drop a second copy.",
            publisher_crash,
        ),
        Scenario(
            "poison",
            "malformed events among good ones: recorded, set aside, never retried",
            "A message that can never be processed is recorded and set aside instead of retried for ever,"
            " so it cannot block the good events behind it.",
            poison,
        ),
        Scenario(
            "one-copy",
            "the rejected fix: a single listener is in order, but slow and fragile",
            "One listener is several times slower than a group, and when it dies nothing is processed at"
            " all. Numbered events and the guard let a whole group share the work and still stay right.",
            one_copy,
            listeners=1,
        ),
        Scenario(
            "naive-vs-guarded",
            "the same faults hit both groups; the naive group's damage is counted",
            "The same crashes, kills and shuffles leave the naive balances wrong and the guarded ones right:"
            " the difference is the check of each user's next number, not luck.",
            naive_vs_guarded,
        ),
        Scenario(
            "node-failover",
            "with --cluster 3: the stream's leader node dies with events in flight",
            "A node's death costs the seconds the others take to elect a new leader, not events: the stream"
            " and the consumers are kept on every node, and the outbox holds what could not be sent meanwhile."
            " Acknowledgements sent during the election are lost, so those events come back: the guard skips"
            " them, the naive group applies them twice.",
            node_failover,
            cluster=3,
        ),
        Scenario(
            "leader-stepdown",
            "with --cluster 3: the stream's leader steps down gracefully: lame duck",
            "A node stopped gracefully hands its leadership over before it leaves, in about a second, so"
            " publishers barely notice; a crash costs the seconds the survivors need to notice the silence.",
            leader_stepdown,
            cluster=3,
        ),
        Scenario(
            "partitioned-vs-guarded",
            "guarded and partitioned groups get the same faults; both stay right",
            "Both designs keep every balance right under the same faults, and both need the number check to skip"
            " the copies that a crash between commit and ack brings back. They pay differently for a dead listener:"
            " the guarded group stalls only the user whose event it held, a partition stalls all its users until a"
            " standby takes it over.",
            partitioned_vs_guarded,
            naive=0,
            partitioned=2,
        ),
        Scenario(
            "hot-partition",
            "one slow user holds up its partition-mates; the guarded group goes on",
            "A partition is processed in order by one listener, so one slow user holds up every user who hashes to"
            " the same partition (head-of-line blocking). The guarded group lets any listener take any event and"
            " sorts them out by number, so a slow user delays only itself.",
            hot_partition,
            naive=0,
            partitioned=2,
        ),
        Scenario(
            "owner-dies",
            "a partition's owner dies holding events: a standby takes over, no loss",
            "When a partition's owner dies, nobody processes the partition until the server lets the silent owner"
            " go and a standby takes it over; the events it held come back after the ack wait, in order, and"
            " nothing is lost. When the owner returns, the standby hands the partition back.",
            owner_dies,
            listeners=1,
            naive=0,
            partitioned=2,
        ),
    )
}

# Older names still accepted on the command line: `slides` is what the lecture called the first story.
ALIASES: dict[str, str] = {"slides": "overtaking-withdrawal"}


def find_scenario(name: str) -> Scenario | None:
    """The scenario called `name` or one of its older names; None if there is none."""
    return SCENARIOS.get(ALIASES.get(name, name))


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """How a run on a lab of its own ended: the account tables, the check, and what it showed."""

    guarded: list[AccountRow]
    naive: list[AccountRow]
    report: CheckReport
    lesson: str
    partitioned: list[AccountRow] = field(default_factory=list)  # a scenario that runs the group

    @property
    def ok(self) -> bool:
        return self.report.ok


async def run_scenario(
    scenario: Scenario, settings: Settings, say: Say, rng: random.Random | None = None
) -> ScenarioRun:
    rng = rng or random.Random()
    if scenario.cluster and not settings.cluster and not settings.nats_url:
        settings = replace(settings, cluster=scenario.cluster)
    lab = Lab(settings)
    await lab.start(listeners=scenario.listeners, naive=scenario.naive, partitioned=scenario.partitioned)
    try:
        measured = await scenario.run(lab, say, rng)
        timeout = settings.ack_wait_s * 4 + 30
        await wait_drained(lab, timeout=timeout)
        # The check judges the partitioned database too when the group ran (docs/design.md, "Checker invariants").
        return ScenarioRun(
            await lab.accounts("guarded"),
            await lab.accounts("naive"),
            await lab.check(),
            scenario.lesson_of(measured),
            await lab.accounts("partitioned") if scenario.partitioned else [],
        )
    finally:
        await lab.stop()
