"""The partitioned group on a real lab: the queue groups pane names each partition's owner, moves a
killed owner's partition to the other listener, and gives it back once the owner is restarted."""

from __future__ import annotations

import time

from conftest import shown_text, wait_for
from textual.widgets import Static

from dashboard.lab.settings import Settings
from dashboard.ui.app import NatslabApp
from dashboard.ui.widgets.accounts import AccountLines
from listeners.partitions import partition_of
from publisher.events import format_cents

SIZE = (160, 48)
# One user in each of the 3 partitions.
USERS = {partition_of(user, 3): user for user in ("amy", "mary", "jim")}


def partitions_line(app: NatslabApp) -> str:
    return shown_text(app.query_one("#header-partitioned", Static), 200)


async def publish_to_every_partition(app: NatslabApp, cents: int) -> None:
    for partition in sorted(USERS):
        await app.driver.publish("deposit", USERS[partition], cents)


async def test_the_pane_shows_each_partitions_owner_through_a_failover_and_back(settings: Settings) -> None:
    assert sorted(USERS) == [0, 1, 2]
    settings.listeners, settings.naive, settings.partitioned = 1, 0, 2
    app = NatslabApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.phase == "running" and app.view.partitions.count == 3, 30, "the lab")
        await wait_for(
            pilot, lambda: [v.name for v in app.view.ordered_listeners()] == ["A", "P1", "P2"], 10, "the cards"
        )
        await wait_for(pilot, lambda: "p0 → — lag 0" in partitions_line(app), 10, "the idle partitions")

        await publish_to_every_partition(app, 1000)
        # Each partition goes to its home listener: P1 has p0 and p2, P2 has p1.
        home = "p0 → P1 lag 0 · p1 → P2 lag 0 · p2 → P1 lag 0 · guard acted 0×"
        await wait_for(pilot, lambda: home in partitions_line(app), 20, f"{home!r} (it shows {partitions_line(app)!r})")

        await pilot.press("2", "k")  # P1, the second card
        await wait_for(pilot, lambda: app.view.listeners["P1"].state == "killed", 5, "P1 to be killed")
        await publish_to_every_partition(app, 500)
        # The server unpins P1's partitions after its priority timeout; P2, standing by, takes them.
        failed_over = "p0 → P2 lag 0 · p1 → P2 lag 0 · p2 → P2 lag 0"
        await wait_for(
            pilot, lambda: failed_over in partitions_line(app), 30, f"{failed_over!r} (it shows {partitions_line(app)!r})"
        )

        await pilot.press("r")
        await wait_for(pilot, lambda: app.view.listeners["P1"].state == "running", 10, "P1 to run again")
        # Its home partitions come back to P1: P2 unpins them once P1's pull has waited a few seconds,
        # and the next event of each pins it to P1.
        published = 2
        deadline = time.monotonic() + 40
        while home not in partitions_line(app):
            assert time.monotonic() < deadline, f"{home!r} (it shows {partitions_line(app)!r})"
            await publish_to_every_partition(app, 250)
            published += 1
            await pilot.pause(1.0)

        def partitioned_rows() -> list[list[str]]:
            text = app.query_one(AccountLines).shown_text()
            return [line.split()[:1] + line.split()[5:7] for line in text.splitlines() if line.strip()]

        # Name, then the partitioned group's Last and Balance (after guarded's and naive's columns).
        balance = format_cents(1000 + 500 + 250 * (published - 2))
        expected = [[user, str(published), balance] for user in ("amy", "jim", "mary")]
        await wait_for(pilot, lambda: partitioned_rows() == expected, 20, f"the partitioned column: {partitioned_rows()}")
        assert "partitioned ✓" in str(app.query_one("#status").render())

        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, 20, "the dashboard to stop its lab")
