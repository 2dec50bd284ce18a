"""Fuzzing the listener: hypothesis-made payloads among good events on a real server.

Every bad payload must end terminated and recorded in poison_events; the listener keeps serving the
good events around them. One lab per example, so examples are few and small.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.lab.lab import Lab
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from publisher.events import MAX_EVENT_BYTES, AccountEvent

GOOD = AccountEvent.new("deposit", "fuzz", 100, 1).to_dict()
SUBJECT = "account.deposit.fuzz"


def is_json_object(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return False


def with_field(name: str, values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    return st.builds(lambda value: json.dumps({**GOOD, name: value}).encode(), values)


# Every payload here breaks the event contract by construction, each for a reason the contract states
# (publisher/events.py), so all of them must end as poison: the parser under test is not the oracle.
bad_payloads = st.one_of(
    # not a JSON object at all
    st.binary(max_size=300).filter(lambda payload: not is_json_object(payload)),
    # over the size limit
    st.binary(min_size=MAX_EVENT_BYTES + 1, max_size=MAX_EVENT_BYTES + 200),
    # amountCents must be a positive integer
    with_field("amountCents", st.one_of(st.integers(-(10**30), 0), st.floats(), st.text(max_size=5), st.none())),
    # number must be a positive integer
    with_field("number", st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=5), st.none())),
    # userId must equal the subject's last token ("fuzz"): this alphabet cannot spell it
    with_field("userId", st.text(alphabet="[]/ bold", min_size=1, max_size=12)),
    # type must be account:deposit on an account.deposit subject: no text of 12 characters is
    with_field("type", st.text(max_size=12)),
    # a field missing
    st.sampled_from(sorted(GOOD)).map(lambda name: json.dumps({k: v for k, v in GOOD.items() if k != name}).encode()),
    # not UTF-8
    st.just(b"\xc3\x28\xa0\xa1"),
)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(bad_payloads, min_size=5, max_size=20))
def test_bad_payloads_are_terminated_and_recorded(payloads: list[bytes]) -> None:
    async def scenario(data_dir: Path) -> tuple[list[int], list[tuple[int, int]]]:
        lab = Lab(Settings(data_dir=data_dir, ack_wait_s=1.0))
        await lab.start(listeners=2, naive=0)
        try:
            await wait_listeners_ready(lab)
            js = lab.nc.jetstream()
            number = 0
            bad_seqs = []
            for payload in payloads:
                ack = await js.publish(SUBJECT, payload)
                bad_seqs.append(ack.seq)
                number += 1
                good = AccountEvent.new("deposit", "fuzz", 100, number)
                await js.publish(good.subject, good.to_json())
            await wait_drained(lab, timeout=60)
            db = sqlite3.connect(data_dir / "accounts.db")
            recorded = [row[0] for row in db.execute("SELECT stream_seq FROM poison_events ORDER BY stream_seq")]
            accounts = db.execute("SELECT last_number, balance_cents FROM accounts WHERE user_id = 'fuzz'").fetchall()
            db.close()
            report = await lab.check()
            assert report.ok, report.problems
            assert recorded == bad_seqs
            return recorded, accounts
        finally:
            await lab.stop()

    with tempfile.TemporaryDirectory(prefix="natslab-fuzz-") as tmp:
        recorded, accounts = asyncio.run(asyncio.wait_for(scenario(Path(tmp)), timeout=120))
    assert len(recorded) == len(payloads)
    assert accounts == [(len(payloads), 100 * len(payloads))]
