"""What the dashboard knows of the cluster's nodes: plain data for the nodes pane, and the timeline
rows their changes make (a node's process state, and which node leads each asset)."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.lab.nodes import ASSETS, NodeView, leader_of

# A node's state, as the timeline says it when it changed.
NODE_EVENTS = {
    "killed": "killed (SIGKILL)",
    "paused": "paused (SIGSTOP)",
    "lame duck": "in lame duck mode (SIGUSR2): handing its leaderships over",
    "stopped": "stopped",
    "exited": "exited by itself (see its log)",
    "restarting": "restarting",
}


def node_events(before: tuple[NodeView, ...], after: tuple[NodeView, ...]) -> list[str]:
    """Timeline rows for what changed between two looks at the nodes."""
    if not before:
        return []
    events = []
    states = {node.name: node.state for node in before}
    for node in after:
        was = states.get(node.name)
        if was is not None and was != node.state:
            if node.state == "running":
                events.append(f"node {node.name} running again" if was != "paused" else f"node {node.name} resumed (SIGCONT)")
            else:
                events.append(f"node {node.name} {NODE_EVENTS.get(node.state, node.state)}")
    for index, asset in enumerate(ASSETS):
        old, new = leader_of(before, index), leader_of(after, index)
        if old == new:
            continue
        if new is None:
            events.append(f"{asset}: no leader answers (electing one)")
        else:
            events.append(f"{new} now leads {asset}" + (f" (was {old})" if old else ""))
    return events


@dataclass(slots=True)
class ClusterView:
    """The nodes as the host last reported them, and the one the node keys act on."""

    nodes: tuple[NodeView, ...] = ()
    selected: str | None = None

    def apply(self, nodes: tuple[NodeView, ...]) -> list[str] | None:
        """Take the host's nodes; None when nothing changed, else the timeline rows for the change."""
        if nodes == self.nodes:
            return None
        events = node_events(self.nodes, nodes)
        self.nodes = nodes
        names = [node.name for node in nodes]
        if self.selected not in names:
            self.selected = names[0] if names else None
        return events

    def select_next(self) -> str | None:
        names = [node.name for node in self.nodes]
        if not names:
            return None
        self.selected = names[(names.index(self.selected) + 1) % len(names)] if self.selected in names else names[0]
        return self.selected

    def node(self, name: str | None) -> NodeView | None:
        return next((node for node in self.nodes if node.name == name), None)
