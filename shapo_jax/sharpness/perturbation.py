"""The SHAPO perturbation: the worst-case step inside a Fisher (KL) ball.

docs/algorithms.md §4 (paper: Algorithm 3 lines 4-7, which its SHAPO routine abstracts;
Appendix B):

    epsilon = argmin_{1/2 eps^T F eps <= delta} L(theta) + g^T eps
            = -sqrt(2 delta / (g^T F^-1 g)) F^-1 g,

computed with x = CG(F, g) as epsilon = -sqrt(2 delta / (g^T x)) x. The same scaled
natural-gradient step, with the opposite sign, is the TRPO step (`natural_step`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from chex import ArrayTree
from flax import struct

from shapo_jax.sharpness.conjugate_gradient import conjugate_gradient
from shapo_jax.sharpness.fisher import MatVec, fisher_vector_product
from shapo_jax.sharpness.tree_math import tree_all_finite, tree_scale, tree_vdot

# The damping of every Fisher solve unless told otherwise (SHAPO's and TRPO's configs use it).
DEFAULT_DAMPING = 0.1


@struct.dataclass
class NaturalStepInfo:
    """Diagnostics of a natural-gradient step of KL radius `delta`.

    g_dot_x: g^T x with x = CG(F, g) (the squared natural-gradient norm).
    predicted_kl: 1/2 s^T F s for the returned step s (about delta when the solve is good;
      0 when the step was zeroed). Computed only when asked for (one extra F product).
    cg_residual: CG's recursively updated residual norm, ||g - (F + damping I) x|| in exact
      arithmetic (`ConjugateGradientInfo.residual_norm`).
    cg_iterations: CG iterations used.
    valid: whether g^T x was a positive finite number (otherwise the step is zero).
    """

    g_dot_x: jax.Array
    predicted_kl: jax.Array
    cg_residual: jax.Array
    cg_iterations: jax.Array
    valid: jax.Array


def _check_delta(delta: float | jax.Array, name: str) -> None:
    if not isinstance(delta, jax.core.Tracer) and jnp.ndim(delta) == 0:
        value = float(delta)
        if not value >= 0.0:  # also rejects NaN
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def natural_step(
    grad: ArrayTree,
    matvec: MatVec,
    delta: float | jax.Array,
    *,
    cg_iters: int = 10,
    damping: float | jax.Array = DEFAULT_DAMPING,
    cg_tol: float = 1e-10,
    return_info: bool = False,
) -> ArrayTree | tuple[ArrayTree, NaturalStepInfo]:
    """The step s = sqrt(2 delta / (g^T x)) x, x = CG(F + damping I, g), of KL radius delta.

    Returns zeros (never NaN or inf) when g^T x is not a positive finite number.
    """
    _check_delta(delta, "delta")
    x, cg_info = conjugate_gradient(
        matvec, grad, iters=cg_iters, damping=damping, tol=cg_tol, return_info=True
    )
    g_dot_x = tree_vdot(grad, x)
    valid = (g_dot_x > 0) & jnp.isfinite(g_dot_x) & tree_all_finite(x)
    safe_g_dot_x = jnp.where(valid, g_dot_x, 1.0)
    scale = jnp.where(valid, jnp.sqrt(2.0 * delta / safe_g_dot_x), 0.0)
    # Multiply by a zeroed x where invalid, so that inf * 0 cannot produce NaN.
    safe_x = jax.tree_util.tree_map(lambda leaf: jnp.where(valid, leaf, 0.0), x)
    step = tree_scale(scale.astype(g_dot_x.dtype), safe_x)
    if not return_info:
        return step
    predicted_kl = 0.5 * tree_vdot(step, matvec(step))
    info = NaturalStepInfo(
        g_dot_x=g_dot_x,
        predicted_kl=predicted_kl,
        cg_residual=cg_info.residual_norm,
        cg_iterations=cg_info.iterations,
        valid=valid,
    )
    return step, info


def shapo_perturbation(
    objective_fn: Callable[[ArrayTree], jax.Array],
    kl_fn: Callable[[ArrayTree], jax.Array] | None,
    params: ArrayTree,
    delta: float | jax.Array,
    *,
    cg_iters: int = 10,
    damping: float | jax.Array = DEFAULT_DAMPING,
    cg_tol: float = 1e-10,
    fisher_product: MatVec | None = None,
    grad: ArrayTree | None = None,
    return_info: bool = False,
) -> ArrayTree | tuple[ArrayTree, NaturalStepInfo]:
    """SHAPO's pessimistic perturbation epsilon = -sqrt(2 delta / (g^T x)) x.

    See docs/algorithms.md §4.

    Args:
      objective_fn: the surrogate L(theta) to be maximised (e.g. the Lagrangian PPO objective).
      kl_fn: mean KL from the policy at `params` (held fixed) to the policy at its argument;
        its Hessian at `params` is the Fisher. May be None if `fisher_product` is given.
      params: the policy parameters theta (any pytree).
      delta: KL radius delta_down >= 0; delta = 0 gives epsilon = 0 exactly.
      cg_iters, damping, cg_tol: conjugate-gradient settings for x = (F + damping I)^-1 g.
      fisher_product: an explicit v -> F v (e.g. the Gauss-Newton form on a subsample).
      grad: g if already computed; otherwise `jax.grad(objective_fn)(params)`.
      return_info: also return `NaturalStepInfo` (g^T x, predicted KL, CG residual).

    Returns:
      epsilon, a pytree like `params`, such that L(theta + epsilon) < L(theta) and
      KL(pi_theta || pi_(theta + epsilon)) ~= delta to second order; zero when g^T x is not
      a positive finite number.
    """
    if fisher_product is None:
        if kl_fn is None:
            raise ValueError("shapo_perturbation needs kl_fn or fisher_product; both are None")
        fisher_product = fisher_vector_product(kl_fn, params)
    if grad is None:
        grad = jax.grad(objective_fn)(params)
    result = natural_step(
        grad,
        fisher_product,
        delta,
        cg_iters=cg_iters,
        damping=damping,
        cg_tol=cg_tol,
        return_info=return_info,
    )
    if return_info:
        step, info = result
        return tree_scale(-1.0, step), info
    return tree_scale(-1.0, result)
