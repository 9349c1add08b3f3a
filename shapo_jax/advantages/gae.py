"""Generalised advantage estimation (Schulman et al., 2016) with truncation handled apart
(docs/algorithms.md §1).

delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
A_t     = delta_t + gamma * lambda * (1 - done_t) * A_(t+1)

s'_t is the true next state (before any auto-reset), so a truncated episode is bootstrapped
from V(s'_t) while the trace is still cut at the episode boundary (done_t = 1).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def generalized_advantages(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Time-major inputs [T, ...]; returns (advantages, value targets = advantages + values)."""
    chex.assert_equal_shape([rewards, values, next_values, terminated, done])
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def backward(next_advantage, inputs):
        delta, d = inputs
        advantage = delta + gamma * gae_lambda * (1.0 - d) * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, done), reverse=True
    )
    return advantages, advantages + values
