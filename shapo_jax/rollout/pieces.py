"""Stepping a batch of environments in sequential pieces (docs/environments.md §13).

`vmap_in_pieces(fn, pieces)` computes `jax.vmap(fn)` over a batch as `pieces` vmapped calls
of batch / pieces each, one after another inside the program (a `lax.map`). Every env is
computed as in one vmapped call (XLA may vectorise the smaller batches differently and round
an occasional value by one float32 ulp; SafetyPointGoal1's observations measured identical
over 20 steps); what changes is the size of each batched operation.

Why: on XLA:CPU, MJX's Newton solver factorises one matrix per env with jaxlib's
batched LAPACK kernels, which split a large batch over the thread pool that also runs the
program and wait for the pieces; with two such calls at once every pool thread can end up
waiting, and the process hangs at 0% CPU. Batches under the kernel's inline limit never wait
(`shapo_jax.training.devices.env_pieces` sizes the pieces).

Sharding: env i goes to piece i % pieces, so a batch split over devices on its leading axis
stays where it is: each piece holds batch / pieces envs, spread evenly over the devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def vmap_in_pieces(fn: Callable[..., Any], pieces: int = 1) -> Callable[..., Any]:
    """`jax.vmap(fn)` over the leading axis of every argument, in `pieces` sequential calls.

    The batch size must be divisible by `pieces`; `pieces=1` is `jax.vmap(fn)` itself.
    """
    if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
        raise ValueError(f"pieces must be a positive integer, got {pieces!r}")
    batched = jax.vmap(fn)
    if pieces == 1:
        return batched

    def in_pieces(*args):
        sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(args)}
        if len(sizes) != 1:
            raise ValueError(f"vmap_in_pieces: arguments disagree on the batch size {sizes}")
        (size,) = sizes
        if size % pieces:
            raise ValueError(f"a batch of {size} cannot be stepped in {pieces} equal pieces; "
                             f"use a divisor of {size}")

        def split(x):  # [size, ...] -> [pieces, size / pieces, ...], env i in piece i % pieces
            return jnp.swapaxes(x.reshape((size // pieces, pieces) + x.shape[1:]), 0, 1)

        def join(y):
            return jnp.swapaxes(y, 0, 1).reshape((size,) + y.shape[2:])

        out = jax.lax.map(lambda piece: batched(*piece), jax.tree_util.tree_map(split, args))
        return jax.tree_util.tree_map(join, out)

    return in_pieces
