"""Per-environment episode bookkeeping: running and last completed return, cost, length."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EpisodeTracker:
    """Shapes [num_envs]. `last_*` hold the most recent completed episode of each env."""

    running_return: jax.Array
    running_cost: jax.Array
    running_length: jax.Array
    last_return: jax.Array
    last_cost: jax.Array
    last_length: jax.Array
    completed: jax.Array  # number of episodes each env has completed


def init_tracker(num_envs: int) -> EpisodeTracker:
    zeros = jnp.zeros((num_envs,), jnp.float32)
    lengths = jnp.zeros((num_envs,), jnp.int32)
    return EpisodeTracker(zeros, zeros, zeros, zeros, zeros, zeros, lengths)


def track_step(
    tracker: EpisodeTracker, reward: jax.Array, cost: jax.Array, done: jax.Array
) -> EpisodeTracker:
    """Add one (action-repeated) step; close the episodes that ended (done = 1)."""
    ret = tracker.running_return + reward
    cst = tracker.running_cost + cost
    length = tracker.running_length + 1.0
    ended = done > 0
    keep = 1.0 - ended
    return EpisodeTracker(
        running_return=ret * keep,
        running_cost=cst * keep,
        running_length=length * keep,
        last_return=jnp.where(ended, ret, tracker.last_return),
        last_cost=jnp.where(ended, cst, tracker.last_cost),
        last_length=jnp.where(ended, length, tracker.last_length),
        completed=tracker.completed + ended.astype(jnp.int32),
    )


@struct.dataclass
class EpisodeSummary:
    """Means over the envs that have completed at least one episode (NaN if none has)."""

    episode_return: jax.Array
    episode_cost: jax.Array
    episode_length: jax.Array
    episodes_completed: jax.Array


def summarize_episodes(tracker: EpisodeTracker) -> EpisodeSummary:
    has = (tracker.completed > 0).astype(jnp.float32)
    count = has.sum()

    def mean(x: jax.Array) -> jax.Array:
        return jnp.where(count > 0, (x * has).sum() / jnp.maximum(count, 1.0), jnp.nan)

    return EpisodeSummary(
        episode_return=mean(tracker.last_return),
        episode_cost=mean(tracker.last_cost),
        episode_length=mean(tracker.last_length),
        episodes_completed=tracker.completed.sum(),
    )
