"""TensorBoard event files: one TensorBoard run (event directory) per training run.

`TensorBoardWriter(root)` writes the records of run `name` into `root/name/` with tensorboardX:
one scalar per metric of the record (`loggers.metric_values`, the tag is the metric's name)
at step `env_steps`. shapo-train's runs are its seeds (`root/seed_<s>/`), a sweep's its members
(named by their settings and seed), so `tensorboard --logdir root` shows every seed or member
as a run of its own, flushed after every log chunk.

Resuming: a writer made with `purge_after=E` (the env steps of the checkpoint resumed from)
starts each run's new event file with a restart marker at step E + 1 (tensorboardX's
`purge_step`): TensorBoard then discards the points after E that the interrupted process had
logged, exactly as metrics.jsonl drops its records after E, so the curves show every step once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from shapo_jax.metrics.loggers import metric_values

TENSORBOARD_DIR = "tensorboard"  # under a run or sweep directory: `tensorboard --logdir` it


class TensorBoardWriter:
    """Event files under `root`, one directory per run, opened on the run's first record."""

    def __init__(self, root: str | os.PathLike, purge_after: int | None = None):
        self.root = Path(root)
        self.purge_after = purge_after
        self._writers: dict[str, SummaryWriter] = {}

    def run_dir(self, run: str) -> Path:
        """The event directory of the run named `run`."""
        return self.root / run

    def remove_run(self, run: str) -> None:
        """Delete the run's event files (it is trained again from scratch)."""
        if run in self._writers:
            raise ValueError(f"TensorBoardWriter: run {run!r} is open; remove it before writing")
        shutil.rmtree(self.run_dir(run), ignore_errors=True)

    def _writer(self, run: str) -> SummaryWriter:
        if run not in self._writers:
            purge = None if self.purge_after is None else int(self.purge_after) + 1
            # The file name starts with the second it was made; the suffix (the first step it
            # may hold) orders the files of a run resumed within the same second.
            self._writers[run] = SummaryWriter(
                logdir=str(self.run_dir(run)), purge_step=purge, flush_secs=60,
                filename_suffix=f".from{purge or 0:012d}")
        return self._writers[run]

    def write(self, run: str, records: Iterable[dict[str, Any]]) -> None:
        """One scalar per metric of each record, at the record's `env_steps`."""
        for record in records:
            writer, step = self._writer(run), int(record["env_steps"])
            for tag, value in metric_values(record).items():
                writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
