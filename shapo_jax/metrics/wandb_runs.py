"""Weights & Biases, optional: one W&B run per training run (seed or sweep member).

`wandb` is not a dependency of shapo-jax: `import_wandb` raises a ValueError saying
`pip install wandb` when it is missing (the CLIs call it before anything compiles). The runs of
one run directory share a W&B group (the directory's name); each run gets its configuration,
logs the same metrics as metrics.jsonl (`loggers.metric_values`) with `env_steps` as the x axis
(`define_metric`), and is finished when training ends. Several runs are open at once in one
process, which needs wandb >= 0.19.10 (`reinit="create_new"`).

A resumed shapo-train run, or a sweep member trained again, starts new W&B runs of the same
names in the same group, from the step it continues at.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shapo_jax.metrics.loggers import metric_values

MIN_WANDB_VERSION = (0, 19, 10)
DEFAULT_PROJECT = "shapo-jax"


@dataclasses.dataclass(frozen=True)
class WandbSettings:
    """Where the W&B runs go: a project and, optionally, an entity (user or team)."""

    project: str = DEFAULT_PROJECT
    entity: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.project, str) or not self.project.strip():
            raise ValueError(f"--wandb-project must be a non-empty name, got {self.project!r}")
        if self.entity is not None and not self.entity.strip():
            raise ValueError(f"--wandb-entity must be a non-empty name, got {self.entity!r}")


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numeric parts of a version string: "0.19.10rc1" -> (0, 19, 10)."""
    parts = []
    for part in str(text).split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(parts)


def import_wandb() -> Any:
    """The `wandb` module; a ValueError naming the fix when it is missing or too old."""
    try:
        import wandb
    except ImportError as error:
        raise ValueError(
            "--wandb needs the Weights & Biases package, which is not installed: "
            "pip install wandb") from error
    version = getattr(wandb, "__version__", "")
    if version_tuple(version) < MIN_WANDB_VERSION:
        wanted = ".".join(map(str, MIN_WANDB_VERSION))
        raise ValueError(f"--wandb needs wandb >= {wanted} (several runs open in one "
                         f"process), found {version or 'an unknown version'}: "
                         "pip install -U wandb")
    return wandb


class WandbRuns:
    """The W&B runs of one run directory (group `group`), local files under `directory`."""

    def __init__(self, settings: WandbSettings, group: str, directory: str | os.PathLike):
        self.wandb = import_wandb()
        self.settings, self.group, self.directory = settings, group, Path(directory)
        self._runs: dict[str, Any] = {}

    def open(self, run: str, config: dict[str, Any]) -> None:
        """Start the W&B run named `run` with `config` (before training: a login or network
        problem shows before anything compiles)."""
        if run in self._runs:
            raise ValueError(f"WandbRuns: run {run!r} is already open")
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = self.wandb.init(
            project=self.settings.project, entity=self.settings.entity, group=self.group,
            name=run, config=config, dir=str(self.directory), reinit="create_new")
        handle.define_metric("env_steps")
        handle.define_metric("*", step_metric="env_steps")
        self._runs[run] = handle

    def write(self, run: str, records: Iterable[dict[str, Any]]) -> None:
        """Log each record's metrics, with its `env_steps`, to the run's W&B run."""
        if run not in self._runs:
            raise ValueError(f"WandbRuns: run {run!r} was not opened; open: {sorted(self._runs)}")
        for record in records:
            self._runs[run].log({"env_steps": int(record["env_steps"]),
                                 **metric_values(record)})

    def flush(self) -> None:
        """Nothing to do: wandb sends logged points in the background."""

    def close(self) -> None:
        for handle in self._runs.values():
            handle.finish()
        self._runs.clear()
