"""With --cluster the dashboard shows the nodes and its N K P L R keys break and mend the selected one,
through the lab's host, on a real three-node cluster."""

from __future__ import annotations

from pathlib import Path

from conftest import shown_text, wait_for

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.widgets.caption import CaptionBar
from dashboard.ui.widgets.nodes import NodesPane

SIZE = (160, 48)


def node_state(app: NatslabApp, name: str) -> str | None:
    node = app.view.cluster.node(name)
    return node.state if node is not None else None


def settled(app: NatslabApp) -> bool:
    nodes = app.view.cluster.nodes
    return app.view.phase == "running" and len(nodes) == 3 and all(node.roles and all(node.roles) for node in nodes)


async def test_the_node_keys_act_on_the_selected_node(tmp_path: Path) -> None:
    app = NatslabApp(Settings(data_dir=tmp_path / "data", ack_wait_s=2.0, cluster=3))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: settled(app), 60, "the cluster's nodes to show, every asset led")
        pane = app.query_one(NodesPane)
        await wait_for(pilot, lambda: pane.display, 5, "the nodes pane to show (it is hidden without a cluster)")
        await wait_for(pilot, lambda: "★ leader" in shown_text(pane, 160), 5, "the pane to show the leaders")
        assert app.view.cluster.selected == "n1"

        await pilot.press("N")
        assert app.view.cluster.selected == "n2"
        await pilot.press("K")
        await wait_for(pilot, lambda: node_state(app, "n2") == "killed", 15, "n2 to be killed")
        await wait_for(
            pilot, lambda: "node n2 killed (SIGKILL)" in str(app.query_one(CaptionBar).render()), 10, "the caption"
        )
        timeline = [entry.event for entry in app.view.timeline if entry.lab_event]
        assert "node n2 killed (SIGKILL)" in timeline, timeline

        await pilot.press("R")
        await wait_for(pilot, lambda: node_state(app, "n2") == "running", 15, "n2 to run again")
        await pilot.press("P")
        await wait_for(pilot, lambda: node_state(app, "n2") == "paused", 15, "n2 to be paused")
        await pilot.press("P")  # a paused node resumes
        await wait_for(pilot, lambda: node_state(app, "n2") == "running", 15, "n2 to be resumed")

        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, 20, "the dashboard to stop its lab")
