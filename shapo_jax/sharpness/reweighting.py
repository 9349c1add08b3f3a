"""The per-sample reweighting that SHAPO induces (docs/algorithms.md §9; paper, Appendix C).

A sample's gradient at theta + epsilon is its gradient at theta weighted by
w(s, a) = pi_(theta+epsilon)(a|s) / pi_theta(a|s) ~= 1 + epsilon^T grad log pi_theta(a|s):
w > 1 for actions the update would make less likely (costly ones), w < 1 for favoured ones.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
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
    """The weights w over cost-incurring and over cost-free samples (NaN where none).

    mean_weight_*: the arithmetic mean of w. Under pi_theta its expectation is 1, but a batch's
    mean is dominated by its rare states where epsilon moves the policy far (w = exp(log w)
    has a heavy right tail), so one sample can set it.
    geometric_weight_*: exp(mean log w), the same split; log w = eps^T grad log pi + O(eps^2)
    is the paper's first-order weight minus 1 (Appendix C), so this is the weight that analysis
    speaks of, insensitive to a few large ratios. Above 1: the group is amplified.
    """

    mean_weight_costly: jax.Array
    mean_weight_safe: jax.Array
    geometric_weight_costly: jax.Array
    geometric_weight_safe: jax.Array
    fraction_costly: jax.Array


def summarize_reweighting(weights: jax.Array, costs: jax.Array,
                          log_weights: jax.Array | None = None) -> ReweightingSummary:
    """Split the weights by whether the sample incurred a cost (> 0).

    `log_weights`: log w as computed (log pi_(theta+eps) - log pi_theta), exact where w itself
    under- or overflows; log(weights) when not given.
    """
    chex.assert_equal_shape([weights, costs])
    if log_weights is None:
        log_weights = jnp.log(weights)
    chex.assert_equal_shape([weights, log_weights])
    costly = (costs > 0).astype(weights.dtype)
    safe = 1.0 - costly

    def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
        # where, not values * mask: an infinite value of the other group would give inf * 0
        count = mask.sum()
        total = jnp.where(mask > 0, values, 0.0).sum()
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)

    return ReweightingSummary(
        mean_weight_costly=masked_mean(weights, costly),
        mean_weight_safe=masked_mean(weights, safe),
        geometric_weight_costly=jnp.exp(masked_mean(log_weights, costly)),
        geometric_weight_safe=jnp.exp(masked_mean(log_weights, safe)),
        fraction_costly=costly.mean(),
    )
