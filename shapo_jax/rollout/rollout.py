"""Collecting experience: a `lax.scan` over a batch of Brax-style environments
(docs/environments.md §3-§4, docs/algorithms.md §6).

Auto-reset gives every env whose episode ended a fresh initial state (a fresh layout); the
transition keeps the true next observation (before the reset) so that a truncated episode can
still be bootstrapped. The fresh states come from a batch of reset states drawn once per
rollout from an explicit key, one per env: with desynchronised episodes some env finishes on
almost every step of a large batch, and resetting the whole batch on each of those steps
would add about 40% to a navigation rollout (a reset costs 0.35-0.43 of a step on
SafetyPointGoal1; the pool adds about 1%: BENCHMARKS.md, scripts/bench_rollout.py). An env
that finishes twice in one rollout (episodes shorter than the rollout) gets a newly drawn
state the second time. With `action_repeat` > 1 each action is applied several times and
rewards and costs are summed over the repeats.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State
from flax import struct

from shapo_jax.rollout.episodes import EpisodeTracker, start_rollout, track_step
from shapo_jax.rollout.pieces import vmap_in_pieces

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


def reset_batch(env: Env, key: jax.Array, num_envs: int, pieces: int = 1) -> State:
    """Reset `num_envs` environments from independent keys (in `pieces`: `vmap_in_pieces`)."""
    return vmap_in_pieces(env.reset, pieces)(jax.random.split(key, num_envs))


def desynchronize_episodes(
    env_state: State, key: jax.Array, episode_length: int
) -> tuple[State, jax.Array]:
    """Put every env at a random point of its episode: its step counter drawn uniformly in
    [0, episode_length). Returns the states and the mask of envs that start part-way (their
    first episodes are truncations, left out of the episode statistics).

    Why: envs reset together stay in lockstep for ever on tasks without termination, so every
    batch would be one time slice of the episode and episodes would all end on one update.
    """
    if "steps" not in env_state.info:
        raise ValueError("desynchronize_episodes needs the step counter info['steps'] of "
                         "envs.TimeLimit (every environment of envs.make has it)")
    steps = env_state.info["steps"]
    offsets = jax.random.randint(key, steps.shape, 0, episode_length).astype(steps.dtype)
    info = dict(env_state.info)
    info["steps"] = offsets
    return env_state.replace(info=info), (offsets > 0).astype(jnp.float32)


def step_with_repeat(
    env: Env, state: State, action: jax.Array, action_repeat: int, pieces: int = 1
) -> tuple[State, jax.Array, jax.Array]:
    """Apply `action` `action_repeat` times to a batch; returns (state, summed reward, summed cost).

    Once an env is done, later repeats neither change its state nor add reward or cost. The
    batch is stepped in `pieces` sequential calls (`vmap_in_pieces`).
    """
    step = vmap_in_pieces(env.step, pieces)
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
    reset_pool: bool = True,
    env_pieces: int = 1,
) -> tuple[State, EpisodeTracker, Transition]:
    """Run `num_steps` policy steps in every env, auto-resetting finished episodes.

    Returns the final env states, the updated episode tracker (its per-rollout sums cover this
    rollout) and time-major transitions. Resets are computed only on steps where some env
    finished, from the rollout's batch of fresh states (module docstring). Under `jax.vmap`
    the test of "some env finished" would be batched and the branch would become a select
    computed every step; name the vmapped axis (`jax.vmap(..., axis_name=...)`) in
    `vmap_axis_name` and the test is taken over all members, so the branch stays a branch.
    `reset_pool=False` resets the whole batch on every such step instead (for comparison:
    scripts/bench_rollout.py). `env_pieces` steps and resets the batch in that many sequential
    calls (`vmap_in_pieces`: the same numbers, smaller batched operations).
    """
    num_envs = env_state.obs.shape[0]

    def across_members(flag: jax.Array) -> jax.Array:
        flag = jnp.any(flag)
        if vmap_axis_name is not None:
            flag = jax.lax.psum(flag.astype(jnp.int32), vmap_axis_name) > 0
        return flag

    def one_step(carry, step_key):
        state, tracker, unused = carry
        action_key, reset_key = jax.random.split(step_key)
        obs = state.obs
        action, log_prob = policy_fn(obs, action_key)
        next_state, reward, cost = step_with_repeat(env, state, action, action_repeat, env_pieces)
        done = next_state.done
        truncated = next_state.info.get("truncation", jnp.zeros_like(done))
        terminated = done * (1.0 - truncated)
        transition = Transition(
            obs=obs, action=action, log_prob=log_prob, reward=reward, cost=cost,
            terminated=terminated, done=done, next_obs=next_state.obs,
        )
        tracker = track_step(tracker, reward, cost, done)
        finished = done > 0

        def reset(s):
            if not reset_pool:
                return _select(finished, reset_batch(env, reset_key, num_envs, env_pieces), s)
            # Envs whose fresh state is used up draw a new batch (rare: episodes shorter
            # than the rollout); the others take theirs from the pool.
            again = finished & ~unused
            fresh = jax.lax.cond(
                across_members(again),
                lambda p: _select(again, reset_batch(env, reset_key, num_envs, env_pieces), p),
                lambda p: p,
                pool,
            )
            return _select(finished, fresh, s)

        next_state = jax.lax.cond(across_members(finished), reset, lambda s: s, next_state)
        return (next_state, tracker, unused & ~finished), transition

    keys = jax.random.split(key, num_steps)
    # The pool's key is folded from the rollout's, apart from the steps' keys.
    pool = None
    if reset_pool:
        pool = reset_batch(env, jax.random.fold_in(key, num_steps), num_envs, env_pieces)
    carry = (env_state, start_rollout(tracker), jnp.ones((num_envs,), bool))
    (env_state, tracker, _), transitions = jax.lax.scan(one_step, carry, keys)
    return env_state, tracker, transitions
