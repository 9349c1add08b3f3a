"""Shared test utilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shapo_jax.rollout import reset_batch


def random_policy_return(env, key, num_envs=256):
    """Mean episode return of uniform random actions in [-1, 1]^2 (one 50-step episode)."""
    reset_key, action_key = jax.random.split(key)
    state = reset_batch(env, reset_key, num_envs)

    def one_step(carry, step_key):
        state, total = carry
        action = jax.random.uniform(step_key, (num_envs, env.action_size), minval=-1, maxval=1)
        state = jax.vmap(env.step)(state, action)
        return (state, total + state.reward), None

    (_, total), _ = jax.lax.scan(
        one_step, (state, jnp.zeros(num_envs)), jax.random.split(action_key, env.episode_length)
    )
    return float(total.mean())
