"""Scenarios on a lab's host: run one at a time, its captions told to every dashboard, and in step
mode each step waits for a request (Space on any dashboard attached to the lab).

The captions and the run's state go out through the `LabService` that owns the runner, which is
also where the requests to start, step and finish a scenario arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from dashboard.lab.lab import Lab
from dashboard.lab.protocol import ScenarioState
from dashboard.lab.scenarios import SCENARIOS
from dashboard.lab.waits import LabError, cancel, describe_error

log = logging.getLogger(__name__)


class ScenarioRunner:
    """The host's scenario: at most one runs; `state` is what dashboards are shown of it."""

    def __init__(
        self, lab: Lab, notice: Callable[..., None], changed: Callable[[], None], caption_read_s: float
    ) -> None:
        self.lab = lab
        self.notice = notice  # notice(kind, **fields): tell every dashboard
        self.changed = changed  # the host's state changed
        # A caption stays this long before the next step (straight through), so a person can read it.
        self.caption_read_s = caption_read_s
        self.state: ScenarioState | None = None
        self._task: asyncio.Task | None = None
        self._step = asyncio.Event()
        self._step_mode = False

    async def stop(self) -> None:
        await cancel(self._task)

    def start(self, name: str, step_mode: bool) -> str:
        scenario = SCENARIOS.get(name)
        if scenario is None:
            raise LabError(f"no scenario named {name!r}; one of: {', '.join(SCENARIOS)}")
        if self.state is not None and not self.state.finished:
            raise LabError(f"the scenario {self.state.name} is still running")
        if scenario.cluster and not self.lab.nodes:
            raise LabError(
                f"{scenario.name} needs a cluster: start natslab with --cluster {scenario.cluster}"
                " (and a --data-dir of its own)"
            )
        self.state = ScenarioState(scenario.name, scenario.summary, step_mode)
        self._step_mode = step_mode
        self._step.clear()
        self.notice("scenario-started", name=scenario.name, summary=scenario.summary, step_mode=step_mode)
        self.changed()
        self._task = asyncio.create_task(self._run(scenario.name), name=f"scenario {name}")
        return f"scenario {scenario.name} started"

    async def _run(self, name: str) -> None:
        scenario, state = SCENARIOS[name], self.state
        assert state is not None

        async def say(caption: str) -> None:
            state.steps.append(caption)
            if self._step_mode:
                state.waiting = True
                self.notice("caption", text=caption, waiting=True)
                self.changed()
                await self._step.wait()
                self._step.clear()
                state.waiting = False
            else:
                self.notice("caption", text=caption, waiting=False)
                self.changed()
                await asyncio.sleep(self.caption_read_s)

        try:
            measured = await scenario.run(self.lab, say, random.Random())
        except asyncio.CancelledError:
            state.finished, state.error = True, "stopped with the lab"
            raise
        except Exception as exc:
            log.warning("scenario %s failed: %r", name, exc)
            await self._restore_speed()  # a failed step may leave listeners slowed down
            state.finished, state.waiting, state.error = True, False, describe_error(exc)
            self.notice("scenario-failed", text=state.error)
        else:
            state.finished, state.lesson = True, scenario.lesson_of(measured)
            self.notice("scenario-finished", text=state.lesson)
        self.changed()

    def next_step(self) -> str:
        state = self.state
        if state is None or state.finished or not self._step_mode:
            raise LabError("no scenario is waiting for a step: x picks one")
        if not state.waiting:
            raise LabError("the step is still running")
        state.waiting = False
        self._step.set()
        self.notice("resumed")
        return "step"

    def run_rest(self) -> str:
        state = self.state
        if state is None or state.finished:
            raise LabError("no scenario is running")
        self._step_mode = state.step_mode = False
        state.waiting = False
        self._step.set()
        self.notice("run-rest")
        return "running the rest of the scenario"

    async def _restore_speed(self) -> None:
        supervisor = self.lab.supervisor
        for entry in supervisor.listeners.values() if supervisor is not None else ():
            if entry.alive and entry.state != "paused":
                try:
                    await self.lab.control("normal", entry.name)
                except LabError as exc:
                    log.warning("could not restore %s to normal speed: %s", entry.name, exc)

