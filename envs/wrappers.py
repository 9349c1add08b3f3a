"""Wrappers that give any Brax-style environment the safe-RL contract.

Contract (docs/environments.md §2-§3): `state.info["cost"]` is the per-step cost (float >= 0),
`state.done` is 1 on termination or truncation, and `state.info["truncation"]` is 1 when the
episode ended only because the time limit was reached (bootstrapping stays valid then).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper

CostFn = Callable[[State, State, jax.Array], jax.Array]


class TimeLimit(Wrapper):
    """Ends the episode after `episode_length` steps, marking it as a truncation."""

    def __init__(self, env: Env, episode_length: int):
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length!r}")
        super().__init__(env)
        self.episode_length = int(episode_length)

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        info = dict(state.info)
        info["steps"] = jnp.zeros((), jnp.int32)
        info["truncation"] = jnp.zeros(())
        return state.replace(info=info)

    def step(self, state: State, action: jax.Array) -> State:
        next_state = self.env.step(state, action)
        steps = state.info["steps"] + 1
        terminated = next_state.done
        truncated = jnp.where(steps >= self.episode_length, 1.0 - terminated, 0.0)
        info = dict(next_state.info)
        info["steps"] = steps
        info["truncation"] = truncated
        return next_state.replace(done=jnp.maximum(terminated, truncated), info=info)


class WithCost(Wrapper):
    """Adds `info["cost"] = cost_fn(state, next_state, action)` to any Brax environment."""

    def __init__(self, env: Env, cost_fn: CostFn):
        super().__init__(env)
        self.cost_fn = cost_fn

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        info = dict(state.info)
        info["cost"] = jnp.zeros(())
        return state.replace(info=info)

    def step(self, state: State, action: jax.Array) -> State:
        next_state = self.env.step(state, action)
        info = dict(next_state.info)
        info["cost"] = jnp.asarray(self.cost_fn(state, next_state, action), jnp.float32)
        return next_state.replace(info=info)
