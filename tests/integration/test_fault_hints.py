"""A fault says truly what the listener held: nothing for an idle one; for a busy one, what comes
back after the ack wait, and it does come back."""

from __future__ import annotations

import sqlite3

from dashboard.lab.failures import hold_one, release
from dashboard.lab.probes import account_is, alive, wait_listeners_ready
from dashboard.lab.waits import wait_until


async def test_a_kill_says_whether_the_listener_held_anything(make_lab) -> None:
    lab = await make_lab(listeners=3, naive=0)
    await wait_listeners_ready(lab)
    idle = alive(lab, "guarded")[0]
    done = await lab.control("kill", idle)
    assert done == (
        f"{idle} killed (SIGKILL); its last report held nothing, so likely nothing comes back;"
        f" what it fetched since comes back after the ack wait ({lab.settings.ack_wait_s:g} s)"
    )

    holder = await hold_one(lab, "guarded", "deposit", "kim", 1000)
    done = await lab.control("kill", holder)
    assert (
        done
        == f"{holder} killed (SIGKILL); it held 1 event (kim #1 deposit $10); it comes back after the ack wait (2 s)"
    )
    # And it does: the survivor applies kim #1 from its second delivery.
    await release(lab, alive(lab, "guarded"))
    await wait_until(lambda: account_is(lab, "guarded", "kim", 1), 30, "kim #1 to be redelivered and applied")
    db = sqlite3.connect(lab.settings.data_dir / "accounts.db")
    try:
        deliveries = db.execute("SELECT delivery_count FROM applied_events WHERE user_id = 'kim'").fetchall()
    finally:
        db.close()
    assert deliveries == [(2,)]
