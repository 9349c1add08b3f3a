"""Diagonal Gaussian policy distribution: log-probabilities, KL and entropy.

All functions sum over the last (action) axis and broadcast over leading axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)^2), summed over action dimensions."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_kl(
    mean_p: jax.Array, log_std_p: jax.Array, mean_q: jax.Array, log_std_q: jax.Array
) -> jax.Array:
    """KL(N_p || N_q) for diagonal Gaussians, summed over action dimensions."""
    var_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    mahalanobis = ((mean_p - mean_q) * jnp.exp(-log_std_q)) ** 2
    return jnp.sum(log_std_q - log_std_p + 0.5 * (var_ratio + mahalanobis - 1.0), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Differential entropy of a diagonal Gaussian, summed over action dimensions."""
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)
