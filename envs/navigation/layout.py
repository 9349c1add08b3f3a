"""Random layouts with keep-outs, drawn by vectorised, jit-safe rejection sampling.

As in Safety-Gymnasium, objects are placed one after the other; each is drawn uniformly in the
placement area shrunk by its keep-out radius and rejected if it lies closer than the sum of
keep-outs to any object placed before it. Instead of retrying in a Python loop, every object
draws `num_candidates` candidates at once and takes the first valid one. If none is valid, it
takes the candidate that violates the keep-outs least and the returned `ok` flag is False (the
original would redraw the whole layout; with the default 64 candidates this is very rare for
the registered tasks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_CANDIDATES = 64


def _candidates(key: jax.Array, keepout: jax.Array, extents: tuple[float, float, float, float],
                num_candidates: int) -> jax.Array:
    xmin, ymin, xmax, ymax = extents
    low = jnp.stack([xmin + keepout, ymin + keepout])
    high = jnp.stack([xmax - keepout, ymax - keepout])
    unit = jax.random.uniform(key, (num_candidates, 2))
    return low + unit * (high - low)


def sample_position(
    key: jax.Array,
    keepout: float | jax.Array,
    extents: tuple[float, float, float, float],
    others_xy: jax.Array,
    others_keepout: jax.Array,
    others_mask: jax.Array,
    num_candidates: int = DEFAULT_CANDIDATES,
) -> tuple[jax.Array, jax.Array]:
    """One position (2,) at least keepout + others_keepout from every unmasked other object.

    Returns (xy, ok); ok is False when no candidate was valid (xy is then the least bad one).
    """
    keepout = jnp.asarray(keepout, jnp.float32)
    cand = _candidates(key, keepout, extents, num_candidates)
    dist = jnp.linalg.norm(cand[:, None, :] - others_xy[None, :, :], axis=-1)
    slack = dist - (keepout + others_keepout)[None, :]
    slack = jnp.where(others_mask[None, :], slack, jnp.inf)
    worst = jnp.min(slack, axis=1) if others_xy.shape[0] else jnp.full((num_candidates,), jnp.inf)
    valid = worst >= 0.0
    first_valid = jnp.argmax(valid)
    least_bad = jnp.argmax(worst)
    ok = jnp.any(valid)
    index = jnp.where(ok, first_valid, least_bad)
    return cand[index], ok


def sample_layout(
    key: jax.Array,
    keepouts: jax.Array,
    extents: tuple[float, float, float, float],
    num_candidates: int = DEFAULT_CANDIDATES,
) -> tuple[jax.Array, jax.Array]:
    """Positions (N, 2) of N objects placed in order with the given keep-outs (N,).

    Returns (xy, ok), ok True when every object found a valid candidate.
    """
    keepouts = jnp.asarray(keepouts, jnp.float32)
    n = keepouts.shape[0]

    def place(carry, inputs):
        placed_xy, placed_mask, ok = carry
        index, object_key, keepout = inputs
        xy, found = sample_position(object_key, keepout, extents, placed_xy, keepouts,
                                    placed_mask, num_candidates)
        placed_xy = placed_xy.at[index].set(xy)
        placed_mask = placed_mask.at[index].set(True)
        return (placed_xy, placed_mask, ok & found), None

    init = (jnp.zeros((n, 2), jnp.float32), jnp.zeros((n,), bool), jnp.array(True))
    keys = jax.random.split(key, n)
    (xy, _, ok), _ = jax.lax.scan(place, init, (jnp.arange(n), keys, keepouts))
    return xy, ok
