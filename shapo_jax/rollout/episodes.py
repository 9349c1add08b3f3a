"""Per-environment episode bookkeeping (docs/algorithms.md §10).

`EpisodeTracker` follows every env's running episode and sums, over one rollout, the return,
cost and length of the *full* episodes that ended in it. An episode counts as full unless it
was started part-way (`desynchronize_episodes` gives every env a random start point: those
first episodes end early by truncation and are bootstrapped in the advantages, but they are no
episode of the task and are left out of the statistics). `EpisodeWindow` keeps those sums for
the last few updates, so that the statistics and the multiplier's cost signal are means over
recently completed episodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EpisodeTracker:
    """Shapes [num_envs]. `last_*` hold the most recent completed full episode of each env;
    `rollout_*` sum the full episodes that ended during the current rollout."""

    running_return: jax.Array
    running_cost: jax.Array
    running_length: jax.Array
    partial: jax.Array  # 1 while the running episode started part-way (left out when it ends)
    last_return: jax.Array
    last_cost: jax.Array
    last_length: jax.Array
    completed: jax.Array  # full episodes each env has completed
    rollout_episodes: jax.Array
    rollout_return: jax.Array
    rollout_cost: jax.Array
    rollout_length: jax.Array


def init_tracker(num_envs: int, partial: jax.Array | None = None) -> EpisodeTracker:
    """A tracker at the start of every env's episode; `partial` marks envs that start part-way."""
    zeros = jnp.zeros((num_envs,), jnp.float32)
    partial = zeros if partial is None else jnp.asarray(partial, jnp.float32)
    counts = jnp.zeros((num_envs,), jnp.int32)
    return EpisodeTracker(zeros, zeros, zeros, partial, zeros, zeros, zeros, counts,
                          zeros, zeros, zeros, zeros)


def start_rollout(tracker: EpisodeTracker) -> EpisodeTracker:
    """Zero the per-rollout sums (the running episodes go on)."""
    zeros = jnp.zeros_like(tracker.rollout_return)
    return tracker.replace(rollout_episodes=zeros, rollout_return=zeros, rollout_cost=zeros,
                           rollout_length=zeros)


def track_step(
    tracker: EpisodeTracker, reward: jax.Array, cost: jax.Array, done: jax.Array
) -> EpisodeTracker:
    """Add one (action-repeated) step; close the episodes that ended (done = 1)."""
    ret = tracker.running_return + reward
    cst = tracker.running_cost + cost
    length = tracker.running_length + 1.0
    ended = done > 0
    full = ended & (tracker.partial == 0)
    keep = 1.0 - ended
    counted = full.astype(jnp.float32)
    return EpisodeTracker(
        running_return=ret * keep,
        running_cost=cst * keep,
        running_length=length * keep,
        partial=tracker.partial * keep,  # the next episode starts at the beginning
        last_return=jnp.where(full, ret, tracker.last_return),
        last_cost=jnp.where(full, cst, tracker.last_cost),
        last_length=jnp.where(full, length, tracker.last_length),
        completed=tracker.completed + full.astype(jnp.int32),
        rollout_episodes=tracker.rollout_episodes + counted,
        rollout_return=tracker.rollout_return + counted * ret,
        rollout_cost=tracker.rollout_cost + counted * cst,
        rollout_length=tracker.rollout_length + counted * length,
    )


@struct.dataclass
class EpisodeSummary:
    """Means over full episodes (NaN when there is none) and how many there were."""

    episode_return: jax.Array
    episode_cost: jax.Array
    episode_length: jax.Array
    episodes_completed: jax.Array


def _means(count, ret, cost, length) -> EpisodeSummary:
    def mean(total: jax.Array) -> jax.Array:
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)

    return EpisodeSummary(mean(ret), mean(cost), mean(length), count)


def summarize_episodes(tracker: EpisodeTracker) -> EpisodeSummary:
    """Each env's last full episode, averaged over the envs that completed one (ever)."""
    has = (tracker.completed > 0).astype(jnp.float32)
    summary = _means(has.sum(), (tracker.last_return * has).sum(),
                     (tracker.last_cost * has).sum(), (tracker.last_length * has).sum())
    return summary.replace(episodes_completed=tracker.completed.sum())


def summarize_rollout(tracker: EpisodeTracker) -> EpisodeSummary:
    """The full episodes that ended during the rollout: their mean return, cost, length."""
    return _means(tracker.rollout_episodes.sum(), tracker.rollout_return.sum(),
                  tracker.rollout_cost.sum(), tracker.rollout_length.sum())


@struct.dataclass
class EpisodeWindow:
    """The per-update sums of full episodes of the last `size` updates (ring buffers [size])."""

    episodes: jax.Array
    episode_return: jax.Array
    episode_cost: jax.Array
    episode_length: jax.Array
    position: jax.Array  # the slot the next update writes


def init_window(size: int) -> EpisodeWindow:
    if size < 1:
        raise ValueError(f"init_window: size must be >= 1, got {size!r}")
    zeros = jnp.zeros((size,), jnp.float32)
    return EpisodeWindow(zeros, zeros, zeros, zeros, jnp.zeros((), jnp.int32))


def push_window(window: EpisodeWindow, tracker: EpisodeTracker) -> EpisodeWindow:
    """Record this rollout's full episodes, replacing those of the oldest update."""
    i = window.position
    return EpisodeWindow(
        episodes=window.episodes.at[i].set(tracker.rollout_episodes.sum()),
        episode_return=window.episode_return.at[i].set(tracker.rollout_return.sum()),
        episode_cost=window.episode_cost.at[i].set(tracker.rollout_cost.sum()),
        episode_length=window.episode_length.at[i].set(tracker.rollout_length.sum()),
        position=(i + 1) % window.episodes.shape[0],
    )


def recent_episodes(window: EpisodeWindow, latest: EpisodeSummary,
                    min_episodes: int) -> EpisodeSummary:
    """The latest update's full episodes when there are at least `min_episodes` of them,
    else all those of the window (NaN means while the window holds none)."""
    windowed = _means(window.episodes.sum(), window.episode_return.sum(),
                      window.episode_cost.sum(), window.episode_length.sum())
    use_latest = latest.episodes_completed >= min_episodes
    return jax.tree_util.tree_map(lambda a, b: jnp.where(use_latest, a, b), latest, windowed)
