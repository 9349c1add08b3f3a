"""Euclidean sharpness-aware minimisation (SAM) for the critics (docs/algorithms.md §8).

epsilon_w = rho * grad / ||grad||; the gradient is then taken at w + epsilon_w. rho = 0
reproduces the plain gradient exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from chex import ArrayTree

from shapo_jax.sharpness.tree_math import tree_add_scaled, tree_norm, tree_select


def isolated_value_and_grad(
    loss_fn: Callable[..., Any], params: ArrayTree, *args: Any, has_aux: bool = False
) -> tuple[Any, ArrayTree]:
    """`jax.value_and_grad` behind an optimisation barrier.

    XLA may fuse (and so round) the same gradient differently when other work consumes it;
    the barrier keeps the plain gradient's program identical whether or not a sharpness-aware
    step follows, so rho = 0 (or delta_down = 0) reproduces plain descent bit for bit.
    """
    params, args = jax.lax.optimization_barrier((params, args))
    out = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
    return jax.lax.optimization_barrier(out)


def sharpness_aware_value_and_grad(
    loss_fn: Callable[..., Any],
    params: ArrayTree,
    rho: float | jax.Array,
    *args: Any,
    has_aux: bool = False,
) -> tuple[Any, ArrayTree]:
    """Return (loss_fn(params, *args), grad of loss_fn at params + rho * g / ||g||).

    The value (and aux) are those at the unperturbed `params`; the gradient is SAM's.
    """
    value, grad = isolated_value_and_grad(loss_fn, params, *args, has_aux=has_aux)
    norm = tree_norm(grad)
    scale = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
    perturbed = tree_add_scaled(params, scale, grad)
    sam_grad = jax.grad(loss_fn, has_aux=has_aux)(perturbed, *args)
    if has_aux:
        sam_grad = sam_grad[0]
    # rho = 0: return the plain gradient itself, so the result is bitwise that of plain
    # descent whatever XLA makes of the (mathematically identical) second evaluation.
    return value, tree_select(scale > 0, sam_grad, grad)


def sharpness_aware_gradient(
    loss_fn: Callable[..., jax.Array], params: ArrayTree, rho: float | jax.Array, *args: Any
) -> ArrayTree:
    """SAM gradient of a loss to be minimised: grad L(w) evaluated at w + rho * g / ||g||."""
    return sharpness_aware_value_and_grad(loss_fn, params, rho, *args)[1]
