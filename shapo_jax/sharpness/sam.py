"""Euclidean sharpness-aware minimisation (SAM) for the critics (DESIGN.md section 1).

epsilon_w = rho * grad / ||grad||; the gradient is then taken at w + epsilon_w. rho = 0
reproduces the plain gradient exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from chex import ArrayTree

from shapo_jax.sharpness.tree_math import tree_add_scaled, tree_norm


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
    value, grad = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
    norm = tree_norm(grad)
    scale = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
    perturbed = tree_add_scaled(params, scale, grad)
    sam_grad = jax.grad(loss_fn, has_aux=has_aux)(perturbed, *args)
    if has_aux:
        sam_grad = sam_grad[0]
    return value, sam_grad


def sharpness_aware_gradient(
    loss_fn: Callable[..., jax.Array], params: ArrayTree, rho: float | jax.Array, *args: Any
) -> ArrayTree:
    """SAM gradient of a loss to be minimised: grad L(w) evaluated at w + rho * g / ||g||."""
    return sharpness_aware_value_and_grad(loss_fn, params, rho, *args)[1]
