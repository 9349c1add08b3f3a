"""Checkpoints of the full training state with orbax (written atomically by orbax: a
checkpoint directory appears only once complete), and atomic writes of small files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class Checkpointer:
    """Save and restore TrainState pytrees under `directory` (keeps the newest `max_to_keep`)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        )

    def save(self, step: int, state: Any) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any]:
        """Restore into the structure, shapes and shardings of `target` (an abstract state)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found under {self.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as error:  # orbax raises several types for damaged files
            raise ValueError(
                f"checkpoint {step} under {self.directory} cannot be read ({error}); "
                "it may be corrupt or from a different configuration"
            ) from error
        return step, state

    def close(self) -> None:
        self.manager.close()
