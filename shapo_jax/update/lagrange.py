"""The Lagrange multiplier as an optax-like `init`/`update` pair (docs/algorithms.md §10).

`adam_lagrange`: lambda_(k+1) = max(0, lambda_k - lr * Adam(-(J_c - d))), the projected
gradient ascent on the dual used in PPO-Lag practice (OmniSafe).
`pid_lagrange`: the PID Lagrangian of Stooke et al. (2020), which damps the oscillation of
the plain dual ascent.
Both take an estimate J_c of the expected episode cost (the trainer's, from each batch: see
docs/algorithms.md §10) and the cost limit d.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class LagrangeState:
    """multiplier: lambda >= 0. inner: the method's own state (Adam moments or PID terms)."""

    multiplier: jax.Array
    inner: object


class LagrangeMultiplier(NamedTuple):
    init: Callable[[], LagrangeState]
    update: Callable[[LagrangeState, jax.Array, jax.Array], LagrangeState]


def adam_lagrange(
    init_value: float | jax.Array = 0.001,
    learning_rate: float | jax.Array = 0.035,
    upper_bound: float | jax.Array = jnp.inf,
) -> LagrangeMultiplier:
    """Projected Adam ascent on lambda with the loss -lambda * (J_c - d)."""
    optimizer = optax.adam(learning_rate)

    def init() -> LagrangeState:
        value = jnp.asarray(init_value, jnp.float32)
        return LagrangeState(multiplier=value, inner=optimizer.init(value))

    def update(state: LagrangeState, episode_cost: jax.Array, cost_limit: jax.Array):
        grad = -(episode_cost - cost_limit).astype(jnp.float32)  # d/dlambda of -lambda (J_c - d)
        updates, inner = optimizer.update(grad, state.inner, state.multiplier)
        value = jnp.clip(optax.apply_updates(state.multiplier, updates), 0.0, upper_bound)
        return LagrangeState(multiplier=value, inner=inner)

    return LagrangeMultiplier(init, update)


@struct.dataclass
class PIDTerms:
    integral: jax.Array
    previous_cost: jax.Array


def pid_lagrange(
    kp: float | jax.Array = 0.1,
    ki: float | jax.Array = 0.01,
    kd: float | jax.Array = 0.01,
    init_value: float | jax.Array = 0.001,
) -> LagrangeMultiplier:
    """lambda = max(0, Kp e + Ki I + Kd max(0, J_c - J_prev)), I = max(0, I + e), e = J_c - d."""

    def init() -> LagrangeState:
        zero = jnp.zeros((), jnp.float32)
        integral = jnp.asarray(init_value, jnp.float32) / jnp.maximum(ki, 1e-8)
        return LagrangeState(
            multiplier=jnp.asarray(init_value, jnp.float32),
            inner=PIDTerms(integral=integral.astype(jnp.float32), previous_cost=zero),
        )

    def update(state: LagrangeState, episode_cost: jax.Array, cost_limit: jax.Array):
        error = episode_cost - cost_limit
        integral = jnp.maximum(0.0, state.inner.integral + error)
        derivative = jnp.maximum(0.0, episode_cost - state.inner.previous_cost)
        value = jnp.maximum(0.0, kp * error + ki * integral + kd * derivative)
        return LagrangeState(
            multiplier=value.astype(jnp.float32),
            inner=PIDTerms(integral=integral, previous_cost=jnp.asarray(episode_cost, jnp.float32)),
        )

    return LagrangeMultiplier(init, update)
