"""Log records: one JSON object per log point and seed, appended to `metrics.jsonl`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from shapo_jax.io import append_durably, atomic_write_text, read_jsonl


def _clean(value: Any) -> Any:
    value = float(value)
    return None if not math.isfinite(value) else value


def log_records(
    metrics: dict[str, Any], env_steps: int, extra: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> list[dict[str, Any]]:
    """One record per seed from metrics of the last update: leaves shaped [] or [seeds].

    `seeds` are the runs' seeds, in member order (default 0, 1, ...); non-finite values are
    written as null."""
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    num_seeds = max([a.shape[0] if a.ndim else 1 for a in arrays.values()] or [1])
    seeds = list(range(num_seeds)) if seeds is None else list(seeds)
    if len(seeds) != num_seeds:
        raise ValueError(f"log_records: {len(seeds)} seeds for metrics of {num_seeds} members")
    records = []
    for index, seed in enumerate(seeds):
        record = {"env_steps": int(env_steps), "seed": int(seed)}
        for key, array in arrays.items():
            record[key] = _clean(array[index] if array.ndim else array)
        record.update(extra or {})
        records.append(record)
    return records


class MetricsWriter:
    """Appends records to a JSONL file, flushed and fsynced per log point (nothing is lost)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, env_steps: int) -> None:
        """Drop records logged after `env_steps` (used when resuming from a checkpoint)."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r["env_steps"] <= env_steps]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, records: list[dict[str, Any]]) -> None:
        append_durably(self.path, "".join(json.dumps(record) + "\n" for record in records))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl file (a torn last line is ignored)."""
    return read_jsonl(path)
