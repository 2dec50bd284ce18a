"""The help screen: every key the dashboard answers to, taken from its bindings, and the settings the
status line shows."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dashboard.lab.cluster import NODE_STATES
from dashboard.lab.natsserver import SYNC_INTERVAL
from listeners.partitions import PRIORITY_TIMEOUT_S
from publisher.service import RETRY_MAX_S

# What the guard does, in a few lines: the lesson the dashboard is built to show.
GUARD = (
    "The publisher numbers each user's events 1, 2, 3… Listeners in a queue group share one durable "
    "consumer: NATS hands each event to one of them and hands it again (redelivers) when no "
    "acknowledgement comes within the ack wait. The guarded group applies a user's event only when its "
    "number is the account's last number + 1: an early one is deferred (not acknowledged, so it comes "
    "back), a number already processed is a duplicate (acknowledged, not applied). The naive group "
    "applies every event as it comes: a lost acknowledgement applies it twice, an overtaking event goes first. "
    "The partitioned group orders another way: each user's events go to one partition, and each partition to one "
    "listener at a time, in stream order; it keeps the guard as a safety net, which a clean run never needs."
)

# What the words on the screen mean, pane by pane.
LEGEND = (
    ("Queue groups", ""),
    ("ack pending", "events the group's consumer delivered and has no acknowledgement for yet"),
    ("pending", "events in the stream not delivered to the group yet"),
    ("redelivering", "events delivered more than once and still unacknowledged (the server's count)"),
    (
        "delivered N (stream S)",
        "N: the consumer's sequence, one per delivery, redeliveries included; S: the stream sequence of the last event delivered",
    ),
    ("ack floor N (stream S)", "every delivery up to N (stream sequence S) is acknowledged"),
    ("waiting pulls", "fetch requests the listeners have open, waiting for events"),
    ("Channels (wide terminals)", ""),
    ("stored · last seq", "events the stream keeps on the channel · the stream sequence of its newest one"),
    ("N/s", "events a second arriving on the channel, with their recent history as bars"),
    ("Listener cards", ""),
    (
        "selected",
        "the card whose number is highlighted (1-9 selects): the keys k p r c s act on it, and it shows its counters",
    ),
    (
        "reconnecting · no leader",
        "the listener lost its connection and is making another · its consumer has no leader answering (a cluster"
        " electing one after a node died): it keeps asking",
    ),
    (
        "holds … for Ns",
        "events the listener fetched and has not acknowledged yet, and for how long. A listener that is slowed, or"
        " holds events longer than the ack wait (a slow user's, a partition's new owner waiting for the old one's),"
        " tells the server every half ack wait that it is still working on them (in_progress): their ack wait starts"
        " again and they are not sent again, so `holds … for 11.7s` past the ack wait with no redelivery is a live"
        " listener at work; only a killed or paused one's events come back",
    ),
    ("(early: waits for #N)", "an event that came before its predecessor; the guard will not apply it before #N"),
    ("redelivery in Ns", "a killed or paused listener's events go to another member after the ack wait"),
    (
        "applied · rejected",
        "the event changed the balance · a withdrawal larger than the balance: processed, balance unchanged",
    ),
    ("skipped duplicates", "events whose number was already processed: acknowledged, not applied again"),
    (
        "deferred",
        "early events: held a moment and checked again (often applied then, same delivery), else handed back (nak)"
        " to come again after a short delay that grows: an early event can come many times within one ack wait",
    ),
    (
        "✓ ⊘ = ↻ ☠ ≠ ‖",
        "a card's last outcome: applied · rejected · skipped duplicate · deferred · poison · conflict · parked",
    ),
    (
        "crashed as asked",
        "the crash c armed: it died after a commit, before its ack (exit code 70); another exit code is a real failure",
    ),
    ("slowed to hold", "a scenario makes a listener sit on what it fetches, so a fault can hit it holding an event"),
    ("redeliveries", "deliveries this listener got that were not the first delivery of the event"),
    ("poison", "malformed events: terminated and recorded, never applied"),
    ("conflicts", "another event came with a number already used: recorded, never applied (red: always wrong)"),
    (
        "parked",
        "events behind a number that did not come within the gap timeout (10 ack waits by default): set aside, applied once it comes",
    ),
    ("Timeline", ""),
    ("×N", "the delivery count: ×2 and up are redeliveries"),
    ("why", "the rule that decided the outcome: last number before → after, what the guard waits for, the balance"),
    ("── … ──", "something the lab did: a kill, a pause, a restart, a publish"),
    ("Partitioned group", ""),
    (
        "P1, P2 …",
        "the listeners of account-service-partitioned. Each starts as the owner of its home partitions (2 listeners,"
        " 3 partitions: P1 has p0 and p2, P2 has p1) and stands by to take over the others; one added with a has no"
        " home partition and only stands by",
    ),
    (
        "partition p0 p1 …",
        "users are split into partitions by a hash of the user id: the stream ACCOUNT_EVENTS_P copies every event"
        " and files it under its user's partition, so all of a user's events are in one partition, in order",
    ),
    (
        "p0 → P1 · owner · owns",
        "the owner of p0 is P1: the server has pinned the partition to it and delivers its events to P1 alone,"
        " one batch after another. The server pins a partition to a listener when it delivers that partition's first"
        " event to it: P1 pulls p0 and p2 and P2 pulls p1 from the start, so they become their owners with the first"
        " events; until then, and for a partition no user hashes to, the owner shows —",
    ),
    ("lag N", "events of the partition not processed yet: not delivered, or delivered and not acknowledged"),
    (
        "P1 killed · none — failing over",
        f"failover: a killed or paused owner keeps its pin until it has not pulled for {PRIORITY_TIMEOUT_S:g} s; then a"
        " standby listener takes the partition, and what the old owner held comes back to it after the ack wait, in"
        " order. A restarted home listener claims its partition back, and the standby hands it over once it has"
        " finished what it holds (hand-back), usually within a second or two",
    ),
    ("none — no listener runs", "events wait in the partition and no listener of the group runs to take it"),
    (
        "—",
        "nobody owns the partition and nothing waits in it: no event of it has come yet (no user may hash to it), or"
        " its owner's pin expired while idle; the listener that gets its next event becomes its owner",
    ),
    ("new owner…", "the server just pinned the partition to a listener that has not reported it yet (a hand-over)"),
    (
        "── p2 now owned by P2 ──",
        "a timeline row for each move of a partition: a standby took it over (was P1), back with its home listener"
        " (handed back), or no owner while events wait (its owner stopped pulling); the first pins make no row",
    ),
    ("N still to copy in", "events of ACCOUNT_EVENTS the partitioned stream has not copied in yet"),
    (
        "guard acted N× since start",
        "how often the number guard had to act for the group since the lab started, over every process of its"
        " listeners, restarts included (skipped duplicates, deferred, conflicts, parked): 0 in a clean run; a crash between commit and ack, a failover from a frozen"
        " owner, or events published out of order make it act",
    ),
    ("Nodes (with --cluster)", ""),
    (
        "★ leader",
        "the node that leads the stream (takes every publish) or a group's consumer (hands out its events, takes its acks)",
    ),
    ("current", "a follower that has every operation of the leader"),
    (
        "lagging N · catching up",
        "a follower N entries behind the leader's log (RAFT: each publish, delivery and ack is an entry, so a"
        " consumer's log grows faster than the stream's) · behind by an amount not known yet",
    ),
    ("offline", "the leader takes that node for gone"),
    (
        "dimmed role",
        "the node is not running: what the leader says of it (its lag grows with every entry it misses)",
    ),
    ("–", "no answer about that asset yet: it is electing a leader, or the node was never among its peers"),
    (
        "electing",
        "no node leads the asset: after a few seconds without a word from the leader, the others vote; meanwhile"
        " publishes and acks find nobody (the outbox keeps the events, the acks are lost and those events come back)",
    ),
    *((state, meaning) for state, meaning in NODE_STATES.items() if state not in ("starting", "restarting")),
    ("Accounts and status line", ""),
    (
        "Last",
        "guarded, partitioned: the last number processed for the user; naive: the number of the last event it applied, in whatever order they came",
    ),
    (
        "red figure · red row",
        "a figure that is not what the stream gives · the check found this user's events processed wrong there (lost, twice, out of order), even if the figures now match",
    ),
    ("expected", "what the events in the stream should give, from the same read as the databases beside it"),
    (
        "partitioned (accounts)",
        "the partitioned group's database, accounts-partitioned.db, read and judged by the check as the guarded one is:"
        " red where it lost, applied twice, reordered or mis-summed events; a Last below expected is on its way while"
        " its partitions still hold the rest",
    ),
    (
        "missing #N since T",
        "a user's event N has not come since T (UTC): the guard holds the later ones back until it does",
    ),
    (
        "✓  …  ⟳  ✗",
        "the check of each group: nothing wrong · backlog N events still to process · the check is catching up · something wrong",
    ),
    (
        "lost, twice, order, bal",
        "events never applied · applied more than once · applied after a later number · users whose balance is wrong (in full on a wide terminal: lost, applied twice, out of order, wrong balance)",
    ),
    ("done N", "events of the stream the group has acknowledged"),
    (
        "partitioned … backlog N",
        "the partitioned group's backlog: events its partitions still have to deliver or see acknowledged, and events"
        " not yet copied into its stream",
    ),
    (
        "lab of natslab up (pid N)",
        "the lab runs in another process (natslab up, natslab web, another dashboard): every key here is a request to"
        " it, every dashboard attached sees the same lab, and q leaves it running",
    ),
    (
        "lab started here",
        "this dashboard started the lab (none ran on its data dir): other dashboards may attach to it, and q stops it",
    ),
    ("nats://… +N", "the lab's NATS URL, and how many more it has (a cluster's other nodes; clients use them all)"),
    (
        "outbox",
        "the publisher's table of events written but not yet sent to NATS; a relay sends them, and when NATS does"
        f" not take them (outbox waiting: why) it tries again, less often each time, up to every {RETRY_MAX_S:g} s",
    ),
    (
        "jim slow: N s/event (u)",
        "every listener of every group takes N s over each of that user's events (u sets it; 0 ends it). A partitioned"
        " listener handles a partition in order, so the user's partition-mates wait behind each slow event; the"
        " guarded and naive listeners take that user's events apart (a slow lane), one at a time, lowest number"
        " first, and go on with everyone else",
    ),
    ("ack wait", "how long NATS waits for an acknowledgement before it delivers an event again"),
    ("sync always", "the embedded server writes each event to disk before acknowledging it"),
    (f"sync every {SYNC_INTERVAL}", "it writes in the background: a power loss can take what was acknowledged since"),
)


def help_rows(bindings: list[Binding], explanations: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, description, explanation) for every binding the footer shows, and every hidden one with an
    explanation of its own (the footer has no room for it).

    `explanations` is keyed by the whole action (`control('kill')`), or by its name without arguments
    (`select` for `select(3)`); another hidden binding is covered by a shown one, like `1` displayed as
    `1-9` for `2` to `9`.
    """
    return [
        (
            binding.key_display or binding.key,
            binding.description,
            explanations.get(binding.action) or explanations.get(binding.action.split("(", 1)[0], ""),
        )
        for binding in bindings
        if binding.show or binding.action in explanations
    ]


class HelpScreen(ModalScreen[None]):
    """A list of keys; Esc or ? closes it."""

    BINDINGS = [Binding("escape", "close", "close"), Binding("question_mark", "close", "close", key_display="?")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2, 0, 0), show_header=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, description, explanation in self.rows:
            table.add_row(keys, description, explanation)
        with VerticalScroll(id="help"):
            yield Static(Text("natslab keys", "bold"), id="help-title")
            yield Static(table)
            yield Static(Text.assemble(("What the guard does\n", "bold"), GUARD), id="help-guard")
            legend = Table(
                box=None,
                padding=(0, 2, 0, 0),
                show_header=False,
                title="Words",
                title_style="bold",
                title_justify="left",
            )
            legend.add_column(style="bold", no_wrap=True, max_width=26)
            legend.add_column()
            for word, meaning in LEGEND:
                if meaning:
                    legend.add_row(word, meaning)
                else:  # a pane's name, heading its words
                    legend.add_row(Text(word, "bold underline"), "")
            yield Static(legend, id="help-legend")
            yield Static(
                Text(
                    "Tab moves between the scrollable panes (the focused one has a bright border), arrows and"
                    " PgUp/PgDn scroll them. Scroll this screen with the arrows. Esc or ? closes it.",
                    "dim",
                ),
                id="help-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#help").focus()  # the arrows scroll it at once

    def action_close(self) -> None:
        self.dismiss(None)
