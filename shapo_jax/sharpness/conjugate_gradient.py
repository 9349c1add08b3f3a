"""Conjugate gradient on parameter pytrees in `lax` control flow (docs/algorithms.md §3).

Solves (A + damping I) x = b with a fixed iteration budget and an early stop on the
residual norm. The loop is a `lax.while_loop`, so it is jit-friendly; under `vmap` JAX
keeps converged members frozen (masked) while the others iterate, so every member gets
exactly the result it would get alone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from chex import ArrayTree
from flax import struct

from shapo_jax.sharpness.tree_math import tree_add_scaled, tree_vdot

# The solve stops once ||r|| <= _PRECISION_FLOOR * eps(dtype) * ||b||, whatever `tol` says.
_PRECISION_FLOOR = 10.0


@struct.dataclass
class ConjugateGradientInfo:
    """Diagnostics of one solve: iterations used and the final norm of the recursively
    updated residual (||b - (A + dI) x|| in exact arithmetic; below it once rounding sets in)."""

    iterations: jax.Array
    residual_norm: jax.Array


def conjugate_gradient(
    matvec: Callable[[ArrayTree], ArrayTree],
    b: ArrayTree,
    *,
    iters: int,
    damping: float | jax.Array = 0.0,
    tol: float = 1e-10,
    return_info: bool = False,
) -> ArrayTree | tuple[ArrayTree, ConjugateGradientInfo]:
    """Solve (matvec + damping I) x = b by conjugate gradient, starting from x = 0.

    Args:
      matvec: v -> A v for a symmetric positive semi-definite A (e.g. a Fisher product).
      b: right-hand side, a pytree like the parameters.
      iters: maximum number of iterations (a Python int: the loop bound is static).
      damping: Tikhonov damping added to A (Levenberg-Marquardt style), may be traced.
      tol: stop once the residual norm falls to `tol` or below, or to 10 eps ||b|| (eps of
        b's dtype), the working precision's limit, whichever comes first.
      return_info: also return a `ConjugateGradientInfo`.
    """
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"conjugate_gradient: iters must be a positive int, got {iters!r}")
    if tol < 0:
        raise ValueError(f"conjugate_gradient: tol must be >= 0, got {tol!r}")

    def damped(v: ArrayTree) -> ArrayTree:
        return tree_add_scaled(matvec(v), damping, v)

    x0 = jax.tree_util.tree_map(jnp.zeros_like, b)
    r0 = b
    rr0 = tree_vdot(r0, r0)
    # The floor keeps the solve out of float32's underflow: the true residual stalls near
    # eps ||A|| ||x|| while the recursively updated one keeps shrinking, and near 1e-38 the
    # inner products lose terms, so alpha = r^T r / p^T A p can jump and x diverge
    # (docs/algorithms.md §3).
    precision_floor_sq = (_PRECISION_FLOOR * jnp.finfo(rr0.dtype).eps) ** 2 * rr0
    tol_sq = jnp.maximum(jnp.asarray(tol, rr0.dtype) ** 2, precision_floor_sq)

    def cond(carry):
        i, _, _, _, rr = carry
        return (i < iters) & (rr > tol_sq)

    def body(carry):
        i, x, r, p, rr = carry
        ap = damped(p)
        p_ap = tree_vdot(p, ap)
        # A breakdown (p^T A p <= 0, only for a non-PSD A) stops the solve where it is.
        ok = p_ap > 0
        alpha = jnp.where(ok, rr / jnp.where(ok, p_ap, 1.0), 0.0)
        x = tree_add_scaled(x, alpha, p)
        r = tree_add_scaled(r, -alpha, ap)
        rr_new = tree_vdot(r, r)
        beta = rr_new / jnp.where(rr > 0, rr, 1.0)
        p = tree_add_scaled(r, beta, p)
        rr_new = jnp.where(ok, rr_new, jnp.zeros_like(rr_new))
        return i + 1, x, r, p, rr_new

    iterations, x, r, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), x0, r0, b, rr0))
    if not return_info:
        return x
    return x, ConjugateGradientInfo(iterations=iterations, residual_norm=jnp.sqrt(tree_vdot(r, r)))
