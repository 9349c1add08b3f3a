"""Run loggers: where log records go besides metrics.jsonl (TensorBoard, Weights & Biases).

A logger receives the records of one named run (a seed of shapo-train, a member of a sweep):
the same records metrics.jsonl holds, one per log point, each with its `env_steps` (the x
axis) and its `seed`. `metric_values` is what every logger logs of a record: its metrics,
without the step and the seed (which name the point and the run), nulls (non-finite values)
left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

# Keys of a record that identify its point and its run rather than measure it.
INDEX_KEYS = ("env_steps", "seed")


class RunLogger(Protocol):
    """What the Runner and the sweep call on each logger, once per log chunk."""

    def write(self, run: str, records: Iterable[dict[str, Any]]) -> None:
        """Log `records` (in step order) as points of the run named `run`."""

    def flush(self) -> None:
        """Make everything written so far visible to readers (a running TensorBoard)."""

    def close(self) -> None:
        """Flush and release the run(s); nothing is written afterwards."""


def seed_run(seed: int) -> str:
    """The run name of a shapo-train seed: `seed_<s>` (vmapped seeds stay apart)."""
    return f"seed_{int(seed)}"


def metric_values(record: dict[str, Any]) -> dict[str, float]:
    """A record's metrics, name -> float: all keys but `env_steps` and `seed`, nulls left out."""
    return {key: float(value) for key, value in record.items()
            if key not in INDEX_KEYS and value is not None}
