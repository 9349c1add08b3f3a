"""Small linear-algebra helpers on parameter pytrees (no flattening, any dtype)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from chex import ArrayTree


def tree_vdot(a: ArrayTree, b: ArrayTree) -> jax.Array:
    """Inner product sum_i <a_i, b_i> over matching leaves."""
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: jnp.vdot(x, y), a, b))
    return sum(leaves[1:], leaves[0]) if leaves else jnp.zeros(())


def tree_add_scaled(a: ArrayTree, scale: jax.Array, b: ArrayTree) -> ArrayTree:
    """a + scale * b, leafwise."""
    return jax.tree_util.tree_map(lambda x, y: x + scale * y, a, b)


def tree_scale(scale: jax.Array, a: ArrayTree) -> ArrayTree:
    return jax.tree_util.tree_map(lambda x: scale * x, a)


def tree_norm(a: ArrayTree) -> jax.Array:
    return jnp.sqrt(tree_vdot(a, a))


def tree_all_finite(a: ArrayTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(a)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def tree_select(pred: jax.Array, on_true: ArrayTree, on_false: ArrayTree) -> ArrayTree:
    """Leafwise `where(pred, on_true, on_false)` for a scalar predicate."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
