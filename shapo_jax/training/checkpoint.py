"""Checkpoints of the full training state with orbax (written atomically by orbax: a
checkpoint directory appears only once complete)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


def _leaf_name(index: int) -> str:
    return f"leaf_{index:05d}"


def _stored_leaves(tree: Any) -> dict[str, Any]:
    """The leaves of a state that hold data, by position. Orbax cannot store zero-size arrays,
    and MJX states have some (e.g. `data.act` of a model without actuator activations)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return {_leaf_name(i): leaf for i, leaf in enumerate(leaves) if math.prod(leaf.shape) > 0}


def _rebuild(target: Any, stored: dict[str, Any]) -> Any:
    """`target`'s structure with the stored leaves and empty arrays for the zero-size ones."""
    leaves, treedef = jax.tree_util.tree_flatten(target)

    def leaf(i: int, like: Any) -> Any:
        if math.prod(like.shape) > 0:
            return stored[_leaf_name(i)]
        empty = np.zeros(like.shape, like.dtype)
        sharding = getattr(like, "sharding", None)
        return jax.device_put(empty, sharding) if sharding is not None else jnp.asarray(empty)

    return jax.tree_util.tree_unflatten(treedef, [leaf(i, x) for i, x in enumerate(leaves)])


class Checkpointer:
    """Save and restore TrainState pytrees under `directory` (keeps the newest `max_to_keep`)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        )

    def save(self, step: int, state: Any) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(_stored_leaves(state)))
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints under `directory`, oldest first."""
        return sorted(int(step) for step in self.manager.all_steps())

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any]:
        """Restore into the structure, shapes and shardings of `target` (an abstract state)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found under {self.directory}")
        abstract = _stored_leaves(jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target))
        try:
            stored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            state = _rebuild(target, stored)
        except Exception as error:  # orbax raises several types for damaged files
            raise ValueError(
                f"checkpoint {step} under {self.directory} cannot be read ({error}); "
                "it may be corrupt or from a different configuration"
            ) from error
        return step, state

    def close(self) -> None:
        self.manager.close()
