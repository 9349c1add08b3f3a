"""Sharding a run over all devices (and hosts) with `jax.sharding`.

The environment batch is split over a one-axis mesh named "envs"; parameters, optimiser
states and statistics are replicated. The program itself is unchanged: XLA's partitioner
inserts the cross-device means of the gradients (every loss is a mean over the whole batch),
so 1 device and N devices compute the same run up to floating-point rounding.

Multi-host: call `jax.distributed.initialize()` on every host before anything else (the CLI's
`--distributed` flag does); `jax.devices()` then lists the devices of all hosts and the same
code shards the environments over all of them.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from shapo_jax.training.train import TrainState

ENV_AXIS = "envs"


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh over `devices` (default: every device of every host)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(devices, (ENV_AXIS,))


def check_divisible(num_envs: int, mesh: Mesh) -> None:
    """num_envs must split evenly over the devices; raise a clear error otherwise."""
    count = mesh.devices.size
    if num_envs % count:
        raise ValueError(
            f"num_envs={num_envs} is not divisible by the {count} devices; "
            f"use a multiple of {count}"
        )


def state_sharding(state_shape: TrainState, mesh: Mesh, leading_axes: int = 0) -> TrainState:
    """Shardings for a TrainState: env fields split on their env axis, the rest replicated.

    `leading_axes` counts axes before the env axis (1 when seeds or settings are vmapped).
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), ENV_AXIS))
    shardings = jax.tree_util.tree_map(lambda _: replicated, state_shape)
    return shardings.replace(
        env_state=jax.tree_util.tree_map(lambda _: split, state_shape.env_state),
        tracker=jax.tree_util.tree_map(lambda _: split, state_shape.tracker),
    )
