"""A run that makes no progress reports it and exits non-zero (`Watchdog`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shapo_jax.training.watchdog import STALL_EXIT_CODE, Watchdog

ROOT = Path(__file__).resolve().parents[1]


def _run(body: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    script = "import time\nfrom shapo_jax.training.watchdog import Watchdog\n" + \
        textwrap.dedent(body)
    tic = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.monotonic() - tic


def test_a_stalled_loop_is_stopped_with_a_message_and_a_nonzero_status() -> None:
    """The main thread blocks (as it does inside a hung XLA call) and never beats."""
    proc, seconds = _run("""
        with Watchdog(1.0, advice="Resume it.") as dog:
            dog.beat("the chunk after update 7")
            time.sleep(120)
        print("finished")
    """)
    assert proc.returncode == STALL_EXIT_CODE != 0
    assert "finished" not in proc.stdout
    assert "no progress for" in proc.stderr and "the chunk after update 7" in proc.stderr
    assert "Resume it." in proc.stderr
    assert seconds < 30  # stopped soon after the timeout, not after the sleep


def test_a_loop_that_keeps_beating_runs_to_the_end() -> None:
    proc, seconds = _run("""
        with Watchdog(1.0) as dog:
            for i in range(12):
                time.sleep(0.25)
                dog.beat(f"step {i}")
        print("finished")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "finished" and "no progress" not in proc.stderr


@pytest.mark.parametrize("timeout", [0, -5, True, float("nan")])
def test_bad_timeouts_are_refused_by_name(timeout) -> None:
    with pytest.raises(ValueError, match=f"got {timeout!r}"):
        Watchdog(timeout)


def test_no_timeout_never_watches() -> None:
    with Watchdog(None) as dog:
        assert dog._thread is None
