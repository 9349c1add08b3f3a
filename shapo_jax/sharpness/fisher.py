"""Fisher-vector products of a policy, never forming the Fisher matrix.

docs/algorithms.md §2: F = E_s[Hessian at theta' = theta of KL(pi_theta(.|s) || pi_theta'(.|s))].
Two equivalent forms are provided:

* `fisher_vector_product`: the Hessian-vector product of any mean-KL function
  (forward-over-reverse, `jax.jvp` of `jax.grad`), for any policy family;
* `gaussian_fisher_vector_product`: the Gauss-Newton form J^T M J v for a diagonal
  Gaussian policy (one `jax.jvp` and one `jax.vjp` through the network), with
  M = diag(1 / sigma^2) on the mean and 2 on each log-std. It is cheaper and exactly PSD.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from chex import ArrayTree

MatVec = Callable[[ArrayTree], ArrayTree]


def fisher_vector_product(kl_fn: Callable[[ArrayTree], jax.Array], params: ArrayTree) -> MatVec:
    """Return v -> F v with F the Hessian of `kl_fn` at `params`.

    `kl_fn(p)` must be the mean KL from the policy at `params` (held fixed, i.e. under
    `jax.lax.stop_gradient`) to the policy at `p`; its Hessian at `p = params` is the Fisher.
    """
    grad_fn = jax.grad(kl_fn)

    def matvec(v: ArrayTree) -> ArrayTree:
        return jax.jvp(grad_fn, (params,), (v,))[1]

    return matvec


def gaussian_fisher_vector_product(
    distribution_fn: Callable[[ArrayTree], tuple[jax.Array, jax.Array]],
    params: ArrayTree,
) -> MatVec:
    """Return v -> F v for a diagonal Gaussian policy in Gauss-Newton form J^T M J v.

    `distribution_fn(p) -> (mean, log_std)`, both of shape [..., action_dim] (a
    state-independent log-std may be broadcast). F is averaged over all leading (state)
    axes and summed over action dimensions, matching the Hessian of the mean KL.
    """
    (mean, log_std), pullback = jax.vjp(distribution_fn, params)
    chex.assert_equal_shape([mean, log_std])
    batch = math.prod(mean.shape[:-1])  # the number of states: every axis but the last
    # M: 1/sigma^2 on the mean, 2 on the log-std (Hessian of the Gaussian KL at equality).
    mean_metric = jnp.exp(-2.0 * jax.lax.stop_gradient(log_std)) / batch

    def matvec(v: ArrayTree) -> ArrayTree:
        _, (mean_tangent, log_std_tangent) = jax.jvp(distribution_fn, (params,), (v,))
        (result,) = pullback((mean_metric * mean_tangent, (2.0 / batch) * log_std_tangent))
        return result

    return matvec
