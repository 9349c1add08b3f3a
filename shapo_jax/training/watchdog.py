"""A run that stops making progress says so and exits non-zero instead of waiting forever.

The training loop reports progress (`Watchdog.beat`) after each compiled call and each chunk
of updates. A thread checks the time since the last beat; past `timeout` seconds it prints
what the run was waiting for and ends the process with `STALL_EXIT_CODE`. It has to end the
process (`os._exit`): the main thread is then blocked inside XLA and cannot take an
exception. Checkpoints and tables are written atomically, so a stopped run resumes from its
last chunk (`shapo-train --resume DIR`, or the sweep's rerun).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

STALL_EXIT_CODE = 3
DEFAULT_STALL_TIMEOUT = 1800.0  # seconds without a finished chunk before a run is stopped


class Watchdog:
    """Ends the process when no `beat` came for `timeout` seconds (None: never).

    Use as a context manager around the training loop; `beat(waiting_for)` marks progress
    and says what comes next, for the message.
    """

    def __init__(self, timeout: float | None, stream: TextIO | None = None,
                 exit_code: int = STALL_EXIT_CODE, advice: str = "") -> None:
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(f"stall timeout must be a positive number of seconds or None, "
                             f"got {timeout!r}")
        self.timeout, self.exit_code, self.advice = timeout, exit_code, advice
        self.stream = stream
        self._last = time.monotonic()
        self._waiting_for = "the first compiled call"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, waiting_for: str) -> None:
        """Progress was made; the run now waits for `waiting_for`."""
        with self._lock:
            self._last, self._waiting_for = time.monotonic(), waiting_for

    def __enter__(self) -> Watchdog:
        self.beat(self._waiting_for)
        if self.timeout is not None:
            self._thread = threading.Thread(target=self._watch, name="shapo-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        assert self.timeout is not None
        period = min(self.timeout / 4, 10.0)
        while not self._stop.wait(period):
            with self._lock:
                idle, waiting_for = time.monotonic() - self._last, self._waiting_for
            if idle > self.timeout:
                stream = self.stream or sys.stderr
                stream.write(f"\nerror: no progress for {idle:.0f} s (stall timeout "
                             f"{self.timeout:g} s) while waiting for {waiting_for}; stopping "
                             f"with exit status {self.exit_code}. {self.advice}\n")
                stream.flush()
                os._exit(self.exit_code)
