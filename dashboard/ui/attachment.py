"""Which lab the dashboard is attached to, from attaching to leaving.

The dashboard attaches to the lab on its data dir, one it started itself or another's (`natslab up`,
`natslab web`, another dashboard). When that lab's host goes away, it says so and attaches again to
the next lab that runs there, without starting one behind the user's back. On `q` it stops only a
lab it started itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from textual.worker import WorkerState, get_current_worker

from dashboard.lab.waits import wait_until
from dashboard.ui import messages
from dashboard.ui.driver import lab_state

if TYPE_CHECKING:
    from dashboard.ui.app import NatslabApp

    _Base = NatslabApp
else:
    _Base = object

log = logging.getLogger(__name__)

# What attached dashboards are told when the dashboard that started their lab quits.
QUIT_REASON = "the dashboard that started it quit"
READY = "Ready. d deposits, w withdraws, x runs a scenario, ? lists every key."


class LabAttachment(_Base):
    """The app's handlers for attaching to a lab, losing it, and leaving it."""

    def on_lab_attached(self, message: messages.LabAttached) -> None:
        state, host = message.state, message.state.host
        log.info("attached to the lab of %s (pid %d): NATS at %s", host.command, host.pid, host.url)
        view = self.view
        if view.listeners:  # attached again, to another lab: none of the last one's processes is in it
            view.new_lab()
        view.url, view.embedded, view.sync = host.url, host.embedded, host.sync
        # The lab as it is now, before the phase says running: nothing in it is news for the timeline.
        view.apply_state(lab_state(state))
        view.learn_counters(state.counters)
        view.phase = "running"
        view.ack_wait_s = host.ack_wait_s
        view.host = None if message.hosting else f"{host.command} (pid {host.pid})"
        view.trickling = state.trickling
        if state.scenario is not None:
            view.scenario = replace(state.scenario, steps=list(state.scenario.steps))
        view.mark("status", "caption")
        if self.driver.hosted is not None:
            self.driver.hosted.service.on_stop = lambda reason: self.call_later(self.stop_requested, reason)
        if message.hosting:
            view.say(READY)
        elif self.settings.lab_options:
            view.say(
                f"Attached to the lab of {view.host}, already running: {', '.join(self.settings.lab_options)}"
                " set up only a lab this dashboard starts, so they were not used. q leaves the lab running.",
                "warning",
            )
        else:
            view.say(f"Attached to the lab of {view.host}; q leaves it running. {READY}")
        self.work(self.driver.poll_server(), "polling the server", "poll-server", exclusive=True)
        self.work(self.driver.run_checker(), "running the checker", "poll-checker", exclusive=True)
        self.work(self.driver.watch_host(), "watching the lab's host", "watch-host", exclusive=True)

    def on_lab_unreachable(self, message: messages.LabUnreachable) -> None:
        view = self.view
        if view.phase == "lost":  # the caption says the lab stopped and what happens next
            return
        if message.waiting:  # no lab yet: nothing is wrong
            view.phase = "waiting"
            view.mark("status")
            if not message.starting:
                view.say(
                    f"Waiting for a lab on {self.settings.data_dir}: `natslab up{self.settings.data_dir_option()}`"
                    " starts one, and this dashboard attaches to it by itself. q leaves.",
                    "warning",
                )
            else:
                view.say(f"Waiting: {message.error}…", "warning")
            return
        view.set_server(view.url, "unreachable", False, view.embedded)
        view.say(f"{message.error}; trying again…", "error")

    def on_lab_lost(self, message: messages.LabLost) -> None:
        """The lab's host went away: wait for a lab again (never start one behind the user's back)."""
        if self.view.phase in ("stopping", "lost") or self.driver.hosted is not None:
            return
        log.info("the lab is gone: %s", message.reason)
        view = self.view
        view.phase, view.host, view.poll_error = "lost", None, None
        view.mark("status")
        if view.scenario is not None and view.scenario.running:
            view.scenario_ended(error="the lab stopped")
        view.say(
            f"The lab stopped: {message.reason}. `natslab up{self.settings.data_dir_option()}` starts another,"
            " and this dashboard attaches by itself; q leaves.",
            "warning",
        )
        self.work(self.reattach(), "attaching again", "lab", exclusive=True)

    async def stop_requested(self, reason: str) -> None:
        """`natslab down` asked the lab this dashboard started to stop: it stops, and the dashboard with it."""
        log.info("asked to stop the lab: %s", reason)
        await self.action_quit()

    async def reattach(self) -> None:
        await self.driver.detach("")
        await self.driver.start_lab(attach_only=True)

    def on_host_changed(self, message: messages.HostChanged) -> None:
        self.view.learn_counters(message.state.counters)
        if self.view.trickling != message.state.trickling:
            self.view.trickling = message.state.trickling
            self.view.mark("status")

    async def action_quit(self) -> None:
        if self.view.phase == "stopping":
            return
        self.view.phase = "stopping"
        if self.driver.hosted is not None:
            self.view.say("Stopping the listeners, the publisher and the NATS server…", "warning")
        else:
            self.view.say("Leaving; the lab goes on.", "warning")
        self.redraw()
        self.work(self.shutdown(), "shutting down", "shutdown")

    async def shutdown(self) -> None:
        me = get_current_worker()
        others = [worker for worker in self.workers if worker is not me]
        for worker in others:
            worker.cancel()
        try:
            # A worker cancelled before it started stays pending: nothing to wait for.
            await wait_until(
                lambda: all(worker.is_finished or worker.state is WorkerState.PENDING for worker in others),
                5.0,
                "the workers to stop",
            )
        except TimeoutError:  # stop the lab anyway: that is what must not be skipped
            log.warning("still running at shutdown: %s", [w.name for w in others if not w.is_finished])
        code = 0
        log.info("leaving the lab%s", " and stopping it" if self.driver.hosted is not None else "")
        try:
            await self.driver.detach(QUIT_REASON)
        except Exception:
            log.exception("stopping the lab failed")
            code = 1
        self.exit(code)

    async def on_unmount(self) -> None:
        # However the app ends (q, ctrl+q, an exception, a test leaving run_test), a lab it started
        # goes with it; after `q` this finds nothing left to do.
        await self.driver.detach(QUIT_REASON)
