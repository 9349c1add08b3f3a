"""Collecting experience: a `lax.scan` over a batch of Brax-style environments
(docs/environments.md §3-§4, docs/algorithms.md §6).

Auto-reset draws a fresh initial state (a fresh layout) from an explicit key for every env
whose episode ended; the transition keeps the true next observation (before the reset) so
that a truncated episode can still be bootstrapped. With `action_repeat` > 1 each action is
applied several times and rewards and costs are summed over the repeats.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State
from flax import struct

from shapo_jax.rollout.episodes import EpisodeTracker, track_step

# policy_fn(observation batch, key) -> (action batch, log-probability batch)
PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@struct.dataclass
class Transition:
    """One step of every env: leaves [num_envs, ...]; [T, num_envs, ...] after a scan."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    cost: jax.Array
    terminated: jax.Array
    done: jax.Array
    next_obs: jax.Array


def _select(mask: jax.Array, on_true, on_false):
    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, on_true, on_false)


def reset_batch(env: Env, key: jax.Array, num_envs: int) -> State:
    """Reset `num_envs` environments from independent keys."""
    return jax.vmap(env.reset)(jax.random.split(key, num_envs))


def step_with_repeat(
    env: Env, state: State, action: jax.Array, action_repeat: int
) -> tuple[State, jax.Array, jax.Array]:
    """Apply `action` `action_repeat` times to a batch; returns (state, summed reward, summed cost).

    Once an env is done, later repeats neither change its state nor add reward or cost.
    """
    step = jax.vmap(env.step)
    state = step(state, action)
    reward, cost = state.reward, state.info["cost"]
    for _ in range(action_repeat - 1):
        candidate = step(state, action)
        live = state.done == 0
        reward = reward + jnp.where(live, candidate.reward, 0.0)
        cost = cost + jnp.where(live, candidate.info["cost"], 0.0)
        state = _select(live, candidate, state)
    return state, reward, cost


def rollout(
    env: Env,
    policy_fn: PolicyFn,
    env_state: State,
    tracker: EpisodeTracker,
    key: jax.Array,
    num_steps: int,
    action_repeat: int = 1,
    vmap_axis_name: str | None = None,
) -> tuple[State, EpisodeTracker, Transition]:
    """Run `num_steps` policy steps in every env, auto-resetting finished episodes.

    Returns the final env states, the updated episode tracker and time-major transitions.
    Resets are computed only on steps where some env finished. Under `jax.vmap` that test
    would be batched and the branch would become a select that resets every step (twice the
    cost of a navigation rollout); name the vmapped axis (`jax.vmap(..., axis_name=...)`)
    in `vmap_axis_name` and the test is taken over all members, so the branch stays a branch.
    """
    num_envs = env_state.obs.shape[0]

    def one_step(carry, step_key):
        state, tracker = carry
        action_key, reset_key = jax.random.split(step_key)
        obs = state.obs
        action, log_prob = policy_fn(obs, action_key)
        next_state, reward, cost = step_with_repeat(env, state, action, action_repeat)
        done = next_state.done
        truncated = next_state.info.get("truncation", jnp.zeros_like(done))
        terminated = done * (1.0 - truncated)
        transition = Transition(
            obs=obs, action=action, log_prob=log_prob, reward=reward, cost=cost,
            terminated=terminated, done=done, next_obs=next_state.obs,
        )
        tracker = track_step(tracker, reward, cost, done)
        # Resetting is only computed when some env finished (for 1000-step episodes: rarely).
        any_done = jnp.any(done > 0)
        if vmap_axis_name is not None:
            any_done = jax.lax.psum(any_done.astype(jnp.int32), vmap_axis_name) > 0
        next_state = jax.lax.cond(
            any_done,
            lambda s: _select(done > 0, reset_batch(env, reset_key, num_envs), s),
            lambda s: s,
            next_state,
        )
        return (next_state, tracker), transition

    keys = jax.random.split(key, num_steps)
    (env_state, tracker), transitions = jax.lax.scan(one_step, (env_state, tracker), keys)
    return env_state, tracker, transitions
