"""The status line: server and connection, ack wait and sync mode, events published and processed, the checker's verdict."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from dashboard.lab.checker import Totals
from dashboard.lab.natsserver import sync_label
from dashboard.ui.view import LabView

SEPARATOR = (" │ ", "dim")


def _verdict(text: Text, label: str, totals: Totals | None, conflicts: int | None = None) -> None:
    """✓ when the check found nothing wrong and nothing pending, ✗ only when it found something wrong;
    events not processed yet are a backlog, never "lost" (the checker tells them apart by the ack floor)."""
    text.append(f"{label} ", "bold")
    if totals is None:
        text.append("…", "dim")
        return
    counts = f"lost {totals.lost} dup {totals.duplicated} order {totals.out_of_order}"
    # Only the guarded group tells conflicts and parked events apart; shown when there are any.
    if conflicts:
        counts += f" conflict {conflicts}"
    if totals.parked:
        counts += f" parked {totals.parked}"
    if totals.wrong_balance:
        counts += f" bal {totals.wrong_balance}"
    if not totals.clean or conflicts:
        text.append(f"✗ {counts}", "bold red")
    elif totals.pending:
        text.append(f"… {counts} backlog {totals.pending}", "yellow")
    else:
        text.append(f"✓ {counts}", "bold green")


class StatusLine(Widget):
    """Is the lab reachable, and is it right: one line, or two when the terminal is narrow."""

    DEFAULT_CSS = """
    StatusLine {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.server = Text()
        self.verdict = Text()

    def show(self, view: LabView) -> None:
        server = Text()
        if view.phase == "starting" and view.connected is False and view.server_state != "unreachable":
            server.append("● starting", "bold cyan")
        elif not view.connected or view.server_state in ("restarting", "down"):
            state = view.server_state if view.server_state in ("restarting", "down") else "unreachable"
            server.append(f"✖ NATS {state}, reconnecting", "bold white on red")
        else:
            server.append("●", "bold green")
        server.append(f" {view.url or 'nats://…'}")
        if view.phase != "starting":
            server.append(f" {view.server_state}" if view.embedded else " external", "dim")
        server.append(*SEPARATOR)
        server.append(f"ack wait {view.ack_wait_s:g}s")
        if view.sync is not None:
            server.append(f" · sync {sync_label(view.sync)}")
        server.append(*SEPARATOR)
        server.append(f"published {view.published()} · processed {view.processed()}")
        if view.outbox_error:
            server.append(" (outbox waiting)", "yellow")
        verdict = Text()
        _verdict(verdict, "guarded", view.verdict("guarded"), view.report.conflicts if view.report else 0)
        if view.report is not None and view.report.naive is not None:
            verdict.append(*SEPARATOR)
            _verdict(verdict, "naive", view.report.naive)
        if view.checking:
            verdict.append(" ⟳", "cyan")
        if view.poll_error:
            verdict.append(*SEPARATOR)
            verdict.append(f"poll failed: {view.poll_error}", "yellow")
        # Only a switch between one line and two changes the height, and only that needs a layout.
        resized = self._fits(server, verdict) != self._fits(self.server, self.verdict)
        self.server, self.verdict = server, verdict
        self.refresh(layout=resized)

    def _fits(self, server: Text, verdict: Text) -> bool:
        return server.cell_len + 3 + verdict.cell_len <= (self.size.width or 10_000)

    def render(self) -> Text:
        if self._fits(self.server, self.verdict):
            line = self.server.copy()
            line.append(*SEPARATOR)
            return line + self.verdict
        text = Text("\n").join([self.server, self.verdict])
        text.no_wrap, text.overflow = True, "ellipsis"
        return text
