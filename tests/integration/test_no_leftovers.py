"""A test that fails, times out or is interrupted inside a lab leaves no process behind and never
hangs pytest: shown by running such tests (lab_that_breaks.py) in a pytest of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from leftovers import running_with

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
EXIT_S = 90  # far above what a lab needs to stop; a pytest still running then has hung


TESTS = {"fails": "test_fails", "times out": "test_hangs", "is interrupted": "test_hangs", "leaks its lab": "test_leaks_its_lab"}
OUTCOMES = {
    "fails": (1, "failing on purpose inside a running lab"),
    "times out": (1, "Timeout"),
    "is interrupted": (2, "KeyboardInterrupt"),
    # The suite's own guard ends what the test left and fails it, naming each process.
    "leaks its lab": (1, "the test left behind"),
}


@pytest.mark.parametrize("how", list(TESTS))
def test_a_test_that_breaks_inside_a_lab_leaves_nothing_running(tmp_path: Path, how: str) -> None:
    base, ready = tmp_path / "inner", tmp_path / "ready"
    test = TESTS[how]
    command = [
        sys.executable, "-m", "pytest", str(HERE / "lab_that_breaks.py"), "-k", test,
        "-p", "no:cacheprovider", f"--basetemp={base}", "-q", "--timeout", "12",
    ]  # fmt: skip
    inner = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NATSLAB_READY_FILE": str(ready)},
        # A suite started in the background (`make test &`) inherits SIGINT ignored, and so would the
        # inner pytest: give it the default, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        if how == "is interrupted":
            deadline = time.monotonic() + 60
            while not ready.exists() and inner.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ready.exists(), "the inner test's lab did not start"
            assert running_with(str(base)), "the lab's processes should be running before the interrupt"
            inner.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = inner.communicate(timeout=EXIT_S)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.communicate()
    code, words = OUTCOMES[how]
    assert inner.returncode == code, output
    assert words in output, output
    assert running_with(str(base)) == {}, output
