"""The Lagrangian surrogate objectives and the critic loss (docs/algorithms.md §1, §8)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def lagrangian_advantage(
    reward_advantage: jax.Array, cost_advantage: jax.Array, multiplier: jax.Array
) -> jax.Array:
    """A_lag = (A_r - lambda * A_c) / (1 + lambda)."""
    chex.assert_equal_shape([reward_advantage, cost_advantage])
    return (reward_advantage - multiplier * cost_advantage) / (1.0 + multiplier)


def clipped_surrogate(
    log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array, clip: float | jax.Array
) -> jax.Array:
    """L_PPO = E[min(r A, clip(r, 1 - c, 1 + c) A)], r = pi/pi_old (to be maximised)."""
    # Equal shapes: a [B] log-prob against a [B, 1] advantage would silently broadcast to [B, B].
    chex.assert_equal_shape([log_prob, old_log_prob, advantage])
    ratio = jnp.exp(log_prob - old_log_prob)
    clipped = jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    return jnp.mean(jnp.minimum(ratio * advantage, clipped * advantage))


def importance_surrogate(
    log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array
) -> jax.Array:
    """L_TRPO = E[r A], r = pi/pi_old (to be maximised)."""
    chex.assert_equal_shape([log_prob, old_log_prob, advantage])
    return jnp.mean(jnp.exp(log_prob - old_log_prob) * advantage)


def value_loss(predicted: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of a critic against its GAE targets."""
    chex.assert_equal_shape([predicted, targets])
    return jnp.mean((predicted - targets) ** 2)


def standardize(x: jax.Array, center_only: bool = False) -> jax.Array:
    """Batch standardisation of advantages (reward: mean 0, std 1; cost: centred only)."""
    centred = x - x.mean()
    if center_only:
        return centred
    return centred / (x.std() + 1e-8)
