"""The per-sample reweighting that SHAPO induces (docs/algorithms.md §9; paper, Appendix C).

A sample's gradient at theta + epsilon is its gradient at theta weighted by
w(s, a) = pi_(theta+epsilon)(a|s) / pi_theta(a|s) ~= 1 + epsilon^T grad log pi_theta(a|s):
w > 1 for actions the update would make less likely (costly ones), w < 1 for favoured ones.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from chex import ArrayTree
from flax import struct

from shapo_jax.sharpness.tree_math import tree_add_scaled


def perturbation_weights(
    log_prob_fn: Callable[[ArrayTree], jax.Array], params: ArrayTree, epsilon: ArrayTree
) -> jax.Array:
    """w_i = pi_(theta+epsilon)(a_i|s_i) / pi_theta(a_i|s_i) for a batch of samples.

    `log_prob_fn(p)` returns log pi_p(a_i|s_i) for every sample i, shape [batch].
    """
    perturbed = tree_add_scaled(params, 1.0, epsilon)
    return jnp.exp(log_prob_fn(perturbed) - log_prob_fn(params))


@struct.dataclass
class ReweightingSummary:
    """Mean weight w over cost-incurring and over cost-free samples (NaN where none)."""

    mean_weight_costly: jax.Array
    mean_weight_safe: jax.Array
    fraction_costly: jax.Array


def summarize_reweighting(weights: jax.Array, costs: jax.Array) -> ReweightingSummary:
    """Split the weights by whether the sample incurred a cost (> 0)."""
    costly = (costs > 0).astype(weights.dtype)
    safe = 1.0 - costly

    def masked_mean(mask: jax.Array) -> jax.Array:
        count = mask.sum()
        return jnp.where(count > 0, (weights * mask).sum() / jnp.maximum(count, 1.0), jnp.nan)

    return ReweightingSummary(
        mean_weight_costly=masked_mean(costly),
        mean_weight_safe=masked_mean(safe),
        fraction_costly=costly.mean(),
    )
