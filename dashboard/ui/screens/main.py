"""The main screen: the panes, drawn from the app's `LabView`, and the keys that break the lab."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from dashboard.lab.client import LabTimeout
from dashboard.lab.cluster import action_words
from dashboard.lab.control import SLOW_MS
from dashboard.lab.lab import Action
from dashboard.lab.nodes import leadership_hint
from dashboard.lab.scenarios import SCENARIOS
from dashboard.ui.driver import BURST_USERS, TRICKLE_RATE
from dashboard.ui.screens.history import HistoryScreen
from dashboard.ui.screens.publish_form import PublishForm, PublishRequest
from dashboard.ui.screens.scenario_log import ScenarioLogScreen
from dashboard.ui.screens.scenario_picker import ScenarioChoice, ScenarioPicker
from dashboard.ui.screens.slow_user_form import DEFAULT_SLOW_MS, SlowUserForm, SlowUserRequest
from dashboard.ui.widgets.accounts import AccountsPane
from dashboard.ui.widgets.caption import CaptionBar
from dashboard.ui.widgets.channels import ChannelsPane
from dashboard.ui.widgets.nodes import NodesPane
from dashboard.ui.widgets.queue_groups import QueueGroupsPane
from dashboard.ui.widgets.status_line import StatusLine, slow_user_now
from dashboard.ui.widgets.timeline import DeliveryTimeline
from listeners.groups import GUARDED_GROUP, PARTITIONED_GROUP

if TYPE_CHECKING:
    from dashboard.ui.app import NatslabApp

BURST_SIZE = 50

REDRAW_INTERVAL_S = 0.5  # twice a second: live to the eye, and half the drawing of four times

EXPLANATIONS = {
    "publish": "a form for user and amount; Enter sends, Esc cancels",
    "select": "select a listener by the number on its card",
    "control('kill')": "SIGKILL the selected listener; what it holds comes back after the ack wait",
    "control('pause')": "SIGSTOP the selected listener, or SIGCONT it when paused",
    "control('restart')": "kill the selected listener and start it again under the same name",
    "control('crash')": "the selected listener exits right after its next database commit, before acking",
    "control('slow')": f"the selected listener takes {SLOW_MS / 1000:g} s per event, or back to normal",
    "control('add')": (
        f"start another listener in the selected listener's group ({GUARDED_GROUP.name} when none is selected);"
        f" one added to {PARTITIONED_GROUP.name} owns no partition: it stands by to take one over"
    ),
    "slow_user": (
        "a form for a user and milliseconds: each of that user's events takes that long in every listener of every"
        " group (0: normal again). The partitioned group's partition waits for it; the guarded and naive listeners take"
        " that user's events apart, one at a time, lowest number first, and go on with everyone else"
    ),
    "restart_server": "stop and start the embedded NATS server (every node, with --cluster); the stream is kept",
    "select_node": (
        "with --cluster, in the nodes pane: N selects the next node; K kills it (SIGKILL: what it led elects a new"
        " leader), P pauses it (SIGSTOP) or resumes it (SIGCONT), L puts it in lame duck mode (SIGUSR2: it hands"
        " its leaderships over, stops taking clients and exits), R starts it again on its ports and store"
    ),
    "burst": f"publish {BURST_SIZE} random deposits and withdrawals for {len(BURST_USERS)} users at once",
    "trickle": f"publish {TRICKLE_RATE:g} random events a second until pressed again: time to kill a listener mid-event",
    "scenario": "pick a scenario; run it with a pause after each caption (Space steps) or straight through",
    "step": "in a scenario run step by step: go on to the next step (Enter runs all the rest); the lab does not wait meanwhile",
    "log": "every caption of the last scenario, and what it showed",
    "history": "every event stored in the stream, filterable by user",
}


# The keys, in the footer's order; EXPLANATIONS says what each does, under ?.
KEYS = [
    Binding("d", "publish('deposit')", "deposit"),
    Binding("w", "publish('withdraw')", "withdraw"),
    Binding("1", "select(1)", "select", key_display="1-9"),
    *[Binding(str(n), f"select({n})", f"select listener {n}", show=False) for n in range(2, 10)],
    Binding("k", "control('kill')", "kill"),
    Binding("p", "control('pause')", "pause"),
    Binding("r", "control('restart')", "restart"),
    Binding("c", "control('crash')", "crash"),
    Binding("s", "control('slow')", "slow"),
    Binding("a", "control('add')", "add"),
    Binding("n", "restart_server", "nats"),
    Binding("N", "select_node", "nodes", key_display="N K P L R"),
    Binding("K", "node('kill')", "kill node", show=False),
    Binding("P", "node('pause')", "pause node", show=False),
    Binding("L", "node('lame-duck')", "lame duck node", show=False),
    Binding("R", "node('restart')", "restart node", show=False),
    Binding("b", "burst", "burst"),
    Binding("t", "trickle", "trickle"),
    Binding("x", "scenario", "scenario"),
    # Not in the footer, which has room for u at 160 columns only without it: in step mode the caption bar
    # says that Space runs the step, and ? lists it (help_rows takes hidden keys it explains).
    Binding("space", "step", "step", key_display="␣", show=False),
    Binding("enter", "run_rest", "run rest", show=False),
    Binding("l", "log", "log"),
    Binding("h", "history", "history"),
    # Last, where a narrower footer cuts it before the keys it always had.
    Binding("u", "slow_user", "slow user"),
]


class MainScreen(Screen[None]):
    """Channels, queue groups, listener cards, account databases and deliveries; keys to break things."""

    BINDINGS = KEYS

    app: NatslabApp

    def compose(self) -> ComposeResult:
        yield CaptionBar(id="caption")
        with Container(id="body"):
            with Horizontal(id="top"):
                yield QueueGroupsPane(id="groups")
                yield ChannelsPane(id="channels")
            yield NodesPane(id="nodes")
            with Container(id="bottom"):
                yield AccountsPane(id="accounts")
                yield DeliveryTimeline(id="timeline")
        yield StatusLine(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(REDRAW_INTERVAL_S, self.redraw)

    def on_resize(self) -> None:
        # Cards fold to one line on a short terminal, the nodes pane drops columns on a narrow one,
        # the account pane fits its columns beside the timeline: draw them again at the new size.
        self.app.view.mark("groups", "caption", "nodes", "accounts")

    def redraw(self) -> None:
        """Bring the panes that changed up to date with the view; no I/O, a few times a second."""
        view = self.app.view
        view.now = self.app.clock()
        dirty = view.take_dirty()
        counting_down = view.counting_down()
        if "caption" in dirty:
            self.query_one(CaptionBar).show(view)
        if "channels" in dirty:
            self.query_one(ChannelsPane).show(view)
        if "groups" in dirty or "listeners" in dirty or counting_down:
            self.query_one(QueueGroupsPane).show(view)
        if "accounts" in dirty:
            self.query_one(AccountsPane).show(view)
        if "timeline" in dirty:
            self.query_one(DeliveryTimeline).show(view)
        if "nodes" in dirty:
            self.query_one(NodesPane).show(view)
            self.refresh_bindings()  # the node keys show only with a cluster
        if "status" in dirty or "groups" in dirty:
            self.query_one(StatusLine).show(view)

    # -- keys --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Another screen (a form, help, history) is on top: the lab keys wait for it to close, and the
        # footer, still visible beneath it, does not offer them. The node keys are for a cluster only.
        if action in ("select_node", "node") and not self.app.view.cluster.nodes:
            return False
        return self.app.screen is self

    def lab_ready(self) -> bool:
        phase = self.app.view.phase
        if self.app.driver.client is None or phase != "running":
            if phase in ("lost", "waiting"):
                self.notify("no lab to act on: this dashboard waits for one (see the top line)", severity="warning", timeout=4)
            else:
                self.notify("natslab is still starting", severity="warning", timeout=2)
            return False
        return True

    def selected_listener(self) -> str | None:
        view = self.app.view
        name = view.selected
        if name is None or name not in view.listeners:
            self.notify("no listener selected: press 1-9", severity="warning", timeout=2)
            return None
        return name

    def action_publish(self, kind: str) -> None:
        if self.lab_ready():
            self.app.push_screen(PublishForm(kind, self.app.last_user), self.publish_requested)

    def publish_requested(self, request: PublishRequest | None) -> None:
        if request is not None:
            self.app.last_user = request.user_id
            driver = self.app.driver
            self.app.work(driver.publish(request.kind, request.user_id, request.amount_cents), "publishing", "publish")

    def action_select(self, number: int) -> None:
        view = self.app.view
        ordered = view.ordered_listeners()
        if not 1 <= number <= len(ordered):
            self.notify(f"there is no listener {number}", severity="warning", timeout=2)
            return
        view.selected = ordered[number - 1].name
        view.mark("listeners", "groups")
        self.redraw()
        self.query_one(QueueGroupsPane).reveal(view.selected)

    def action_control(self, key: str) -> None:
        """k, p, r, c, s, a: p and s toggle, from what the selected listener's card shows."""
        if not self.lab_ready():
            return
        if key == "add":  # to the selected listener's group
            selected = self.app.view.listeners.get(self.app.view.selected or "")
            mode = selected.mode if selected is not None else "guarded"
            self.app.work(self.app.driver.control("add", "", mode), f"adding a {mode} listener", "control")
            return
        name = self.selected_listener()
        if name is None:
            return
        listener = self.app.view.listeners[name]
        action: Action = key  # type: ignore[assignment]
        if key == "pause" and listener.state == "paused":
            action = "resume"
        elif key == "slow" and listener.slow_ms > 0:
            action = "normal"
        self.app.work(self.app.driver.control(action, name), f"{action} {name}", "control")

    def action_slow_user(self) -> None:
        if self.lab_ready():
            slow = slow_user_now(self.app.view)
            user, ms = slow if slow is not None else (self.app.last_user, DEFAULT_SLOW_MS)
            self.app.push_screen(SlowUserForm(user, ms), self.slow_user_requested)

    def slow_user_requested(self, request: SlowUserRequest | None) -> None:
        if request is not None:
            self.app.last_user = request.user_id
            self.app.work(
                self.app.driver.slow_user(request.user_id, request.ms), f"slowing {request.user_id}", "control"
            )

    def action_select_node(self) -> None:
        view = self.app.view
        if view.cluster.select_next() is not None:
            view.mark("nodes")
            self.redraw()

    def action_node(self, action: str) -> None:
        """K, P, L, R on the selected node; P resumes a paused one."""
        cluster = self.app.view.cluster
        node = cluster.node(cluster.selected)
        if not self.lab_ready() or node is None:
            return
        if action == "pause" and node.state == "paused":
            action = "resume"

        async def ask() -> None:
            # Said here: the host sends no notice of what it did to a node (see LabService._node_control).
            done = f"node {node.name} {action_words(action)}{leadership_hint(action, node.leads())}"
            try:
                await self.app.driver.node_control(action, node.name)
            except LabTimeout:
                # The answer can be lost with the node this dashboard's connection went through.
                self.app.view.say(f"{done} — asked; its answer was lost, the nodes pane shows what was done", "warning")
                return
            self.app.view.say(done)

        self.app.work(ask(), f"{action} node {node.name}", "node")

    def action_restart_server(self) -> None:
        if self.lab_ready():
            self.app.work(self.app.driver.restart_server(), "restarting the NATS server", "server", exclusive=True)

    def action_burst(self) -> None:
        if self.lab_ready():
            self.app.work(self.app.driver.publish_burst(BURST_SIZE), "publishing a burst", "publish")

    def action_trickle(self) -> None:
        """Start or stop the lab's trickle (it runs on the lab's host, for every dashboard attached)."""
        if not self.lab_ready():
            return
        view = self.app.view
        on = not view.trickling
        view.trickling = on
        view.mark("status")
        if on:
            view.say(f"Trickle: {TRICKLE_RATE:g} random events a second, until t is pressed again")
            self.notify(f"trickle: {TRICKLE_RATE:g} random events a second until t is pressed again", timeout=3)
        else:
            view.say("Trickle stopped")
            self.notify("trickle stopped", timeout=2)
        self.app.work(self.app.driver.set_trickle(on), "the trickle", "trickle")

    def scenario_running(self) -> bool:
        scenario = self.app.view.scenario
        return scenario is not None and scenario.running

    def action_scenario(self) -> None:
        if not self.lab_ready():
            return
        if self.scenario_running():
            self.notify("the scenario is already running", severity="warning", timeout=3)
            return
        choices = [(scenario.name, scenario.summary) for scenario in SCENARIOS.values()]
        self.app.push_screen(ScenarioPicker(choices), self.scenario_chosen)

    def scenario_chosen(self, choice: ScenarioChoice | None) -> None:
        if choice is not None and self.lab_ready():
            self.app.work(
                self.app.driver.run_scenario(choice.name, step_mode=choice.step_mode), "starting the scenario",
                "scenario",
            )  # fmt: skip

    def action_step(self) -> None:
        scenario = self.app.view.scenario
        if scenario is None or not scenario.running or not scenario.step_mode:
            self.notify("Space steps through a scenario run step by step: x picks one", timeout=3)
            return
        if not scenario.waiting:
            self.notify("the step is still running", timeout=2)
            return
        self.app.view.scenario_step(None)
        self.app.work(self.app.driver.next_step(), "the next step", "scenario")

    def action_run_rest(self) -> None:
        scenario = self.app.view.scenario
        if scenario is not None and scenario.running and scenario.step_mode:
            scenario.step_mode = False
            self.app.view.scenario_step(None)
            self.app.work(self.app.driver.run_rest(), "the rest of the scenario", "scenario")

    def action_log(self) -> None:
        scenario = self.app.view.scenario
        if scenario is None:
            self.notify("no scenario has run yet: x picks one", timeout=3)
            return
        self.app.push_screen(ScenarioLogScreen(scenario))

    def action_history(self) -> None:
        if self.lab_ready():
            self.app.push_screen(HistoryScreen(self.app.driver.history))
