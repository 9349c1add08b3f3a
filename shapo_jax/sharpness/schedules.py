"""How large the KL radius is at each update (docs/algorithms.md §7; paper, Prop. 5, App. F).

With a Gaussian posterior Q(theta) = N(theta_0, F^-1 / n), the most probable parameters whose
linearised objective sits at the alpha-quantile are the Fisher-SAM perturbation of radius
delta = z_alpha^2 / (2 n). A schedule maps the sample count n_t to delta_down.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

DeltaSchedule = Callable[[jax.Array], jax.Array]


def _is_concrete(x: object) -> bool:
    return not isinstance(x, jax.core.Tracer)


def pessimism_delta(alpha: float | jax.Array, n: float | jax.Array) -> jax.Array:
    """delta_down = z_alpha^2 / (2 n), z_alpha the standard normal alpha-quantile (Prop. 5).

    Valid for alpha in (0, 1/2) and n > 0. Concrete bad values raise `ValueError`; traced
    values cannot be checked and give NaN outside the valid range.
    """
    if _is_concrete(alpha) and jnp.ndim(alpha) == 0:
        a = float(alpha)
        if not 0.0 < a < 0.5:
            raise ValueError(f"pessimism_delta: alpha must lie in (0, 0.5), got {a!r}")
    if _is_concrete(n) and jnp.ndim(n) == 0:
        count = float(n)
        if not count > 0.0:
            raise ValueError(f"pessimism_delta: n must be > 0 (a sample count), got {count!r}")
    alpha = jnp.asarray(alpha, dtype=jnp.result_type(float))
    n = jnp.asarray(n, dtype=alpha.dtype)
    valid = (alpha > 0) & (alpha < 0.5) & (n > 0)
    z = ndtri(alpha)
    return jnp.where(valid, z**2 / (2.0 * n), jnp.nan)


def constant_schedule(delta: float) -> DeltaSchedule:
    """delta_down fixed at `delta` whatever the sample count."""
    if not float(delta) >= 0.0:
        raise ValueError(f"constant_schedule: delta must be >= 0, got {delta!r}")

    def schedule(n: jax.Array) -> jax.Array:
        del n
        return jnp.asarray(delta, dtype=jnp.result_type(float))

    return schedule


def quantile_schedule(alpha: float, scale: float = 1.0) -> DeltaSchedule:
    """delta_down = scale * z_alpha^2 / (2 n_t): pessimism that fades as samples accrue.

    Pass n_t = the samples collected so far (the paper's choice) or those of the current batch.
    """
    pessimism_delta(alpha, 1.0)  # validates alpha now, before any compilation
    if not float(scale) >= 0.0:
        raise ValueError(f"quantile_schedule: scale must be >= 0, got {scale!r}")

    def schedule(n: jax.Array) -> jax.Array:
        n = jnp.maximum(jnp.asarray(n, dtype=jnp.result_type(float)), 1.0)
        return scale * pessimism_delta(alpha, n)

    return schedule
