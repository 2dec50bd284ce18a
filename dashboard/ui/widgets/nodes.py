"""The nodes pane (with `--cluster`): each node's process, and its part in the stream and each consumer."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from dashboard.lab.nodes import ASSETS, CURRENT, LEADER, leaderless
from dashboard.ui.view import LabView

# A node state that is a fault the user made, or a node on its way back: yellow, never red.
STATE_STYLES = {"running": "green", "restarting": "cyan", "starting": "cyan"}
KEYS = "N selects a node · K kill · P pause/resume · L lame duck · R restart"
# Under this many columns the pane drops pid and port and names the assets shortly.
WIDE = 120
SHORT_NAMES = {"stream": "stream", "account-service": "guarded", "account-service-naive": "naive"}


def role_text(role: str, state: str) -> Text:
    if role == LEADER:
        return Text("★ leader", "bold cyan")
    if not role:
        return Text("–", "dim")
    if state not in ("running", "lame duck"):
        return Text(role, "dim")  # what the leader says of a node that is not there
    return Text(role, "" if role == CURRENT else "yellow")


def asset_header(asset: str, wide: bool) -> str:
    if not wide:
        return SHORT_NAMES.get(asset, asset)
    return "stream ACCOUNT_EVENTS" if asset == "stream" else f"consumer {asset}"


class NodesPane(Static):
    """One row per node: state, pid, client port, and its role in the stream and each group's consumer."""

    def on_mount(self) -> None:
        self.border_title = "Nodes"
        self.border_subtitle = KEYS

    def show(self, view: LabView) -> None:
        cluster = view.cluster
        self.display = bool(cluster.nodes)
        if not cluster.nodes:
            return
        wide = self.app.size.width >= WIDE  # the pane spans the screen; its own size is 0 while hidden
        self.border_title = (
            f"Nodes · a JetStream cluster of {len(cluster.nodes)}: each node keeps the stream and both consumers,"
            " one node leads each (★)"
            if wide
            else f"Nodes · cluster of {len(cluster.nodes)}, ★ leads"
        )
        self.border_subtitle = KEYS if wide else "N K P L R (?)"
        table = Table(box=None, padding=(0, 2 if wide else 1, 0, 0), show_edge=False, expand=False)
        table.add_column("", no_wrap=True, min_width=1)
        table.add_column("node", no_wrap=True, min_width=4)
        table.add_column("state", no_wrap=True, min_width=9)
        if wide:
            table.add_column("pid", no_wrap=True, justify="right")
            table.add_column("port", no_wrap=True, justify="right")
        for asset in ASSETS:
            table.add_column(asset_header(asset, wide), no_wrap=True, overflow="ellipsis")
        for node in cluster.nodes:
            selected = node.name == cluster.selected
            process = (str(node.pid) if node.pid else "–", str(node.port) if node.port else "–") if wide else ()
            table.add_row(
                Text("▸", "bold reverse") if selected else Text(" "),
                Text(node.name, "bold reverse" if selected else "bold"),
                Text(node.state, STATE_STYLES.get(node.state, "yellow")),
                *process,
                *(role_text(role, node.state) for role in node.roles),
            )
        running = sum(1 for node in cluster.nodes if node.state in ("running", "lame duck"))
        majority = len(cluster.nodes) // 2 + 1
        looked = any(node.roles for node in cluster.nodes)  # the first look at the roles has come
        electing = leaderless(cluster.nodes) if looked else []
        if running < majority:
            table.caption = (
                f"only {running} of {len(cluster.nodes)} nodes run: no leader can be elected without a majority"
                f" ({majority}); R restarts the selected node"
            )
        elif electing:
            table.caption = f"no leader answers yet for {', '.join(electing)}: electing (a few seconds)"
        if table.caption:
            table.caption_style = "yellow"
            table.caption_justify = "left"
        self.update(table)
