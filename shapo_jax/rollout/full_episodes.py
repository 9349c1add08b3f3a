"""Whole episodes from reset, for evaluation (docs/environments.md §4).

Each of `num_envs` envs starts from its own reset state and is stepped for one episode's
ceil(episode_length / action_repeat) policy steps; its return and cost count until its first
end (termination or time limit), so every figure is one complete episode, unlike the
training rollout's desynchronised, auto-reset episodes. Both the trainer's periodic
evaluation (`Trainer.evaluate`) and `shapo-eval` run this one loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

from shapo_jax.rollout.rollout import PolicyFn, reset_batch, step_with_repeat

# (initial state, per-step states, alive before each step) of episode 0, each a pytree of
# one env's state (the per-step ones with a leading time axis)
Recording = tuple[State, State, jax.Array]


def episode_horizon(env: Env, action_repeat: int) -> int:
    """Policy steps of a full episode: ceil(episode_length / action_repeat)."""
    return -(-int(env.episode_length) // int(action_repeat))


def full_episodes(
    env: Env, policy: PolicyFn, reset_key: jax.Array, action_key: jax.Array, num_envs: int,
    action_repeat: int = 1, pieces: int = 1, record_first: bool = False,
) -> tuple[jax.Array, jax.Array, Recording | None]:
    """Returns and costs [num_envs] of one episode per env, and episode 0's recording.

    Episode i starts from env.reset(jax.random.split(reset_key, num_envs)[i]); the policy's
    step t gets jax.random.split(action_key, horizon)[t]. The batch is stepped in `pieces`
    sequential calls (`vmap_in_pieces`). Recording: None unless `record_first`.
    """
    start = reset_batch(env, reset_key, num_envs, pieces)

    def one_step(carry, key):
        env_state, ret, cost, alive = carry
        action, _ = policy(env_state.obs, key)
        env_state, reward, step_cost = step_with_repeat(env, env_state, action, action_repeat,
                                                        pieces)
        ret = ret + alive * reward
        cost = cost + alive * step_cost
        out = (jax.tree_util.tree_map(lambda x: x[0], env_state), alive[0]) \
            if record_first else None
        alive = alive * (1.0 - env_state.done)
        return (env_state, ret, cost, alive), out

    zeros = jnp.zeros((num_envs,), jnp.float32)
    horizon = episode_horizon(env, action_repeat)
    (_, ret, cost, _), steps = jax.lax.scan(
        one_step, (start, zeros, zeros, zeros + 1.0), jax.random.split(action_key, horizon))
    recording = None
    if record_first:
        recording = (jax.tree_util.tree_map(lambda x: x[0], start),) + steps
    return ret, cost, recording
