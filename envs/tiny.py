"""TinyHazardNav: a small, fast safe task of our own (pure JAX, no physics engine).

A point in the plane starts on the left, the goal lies on the right and a hazard disc sits
between them: the straight path costs about 10 per episode, a detour costs nothing. Trains in
seconds on a CPU, for tests, examples and the notebooks' first cells.

Observation (6): position (2), goal - position (2), hazard centre - position (2).
Action (2) in [-1, 1]^2, clipped: a velocity command, position += step_size * action.
Reward: progress towards the goal, plus `goal_bonus` on steps within `goal_radius` of it.
Cost: 1 while the point is strictly inside the hazard disc, else 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State
from flax import struct

from envs.wrappers import TimeLimit


@struct.dataclass
class TinyNavState:
    position: jax.Array
    goal: jax.Array
    hazard: jax.Array


class TinyHazardNav(Env):
    """Reach the goal without crossing the hazard (see the module docstring)."""

    def __init__(
        self,
        hazard_radius: float = 0.5,
        goal_radius: float = 0.2,
        goal_bonus: float = 0.1,
        step_size: float = 0.1,
        spawn_noise: float = 0.2,
    ):
        for name, value in [("hazard_radius", hazard_radius), ("goal_radius", goal_radius),
                            ("step_size", step_size)]:
            if not value > 0:
                raise ValueError(f"TinyHazardNav: {name} must be > 0, got {value!r}")
        if spawn_noise < 0:
            raise ValueError(f"TinyHazardNav: spawn_noise must be >= 0, got {spawn_noise!r}")
        self.hazard_radius = hazard_radius
        self.goal_radius = goal_radius
        self.goal_bonus = goal_bonus
        self.step_size = step_size
        self.spawn_noise = spawn_noise

    @property
    def observation_size(self) -> int:
        return 6

    @property
    def observation_blocks(self) -> list[tuple[str, int]]:
        """Names and sizes of the observation's blocks, in order."""
        return [("position", 2), ("goal_offset", 2), ("hazard_offset", 2)]

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "jax"

    @property
    def dt(self) -> float:
        return 0.1

    def _obs(self, s: TinyNavState) -> jax.Array:
        return jnp.concatenate([s.position, s.goal - s.position, s.hazard - s.position])

    def reset(self, rng: jax.Array) -> State:
        noise = self.spawn_noise * jax.random.uniform(rng, (3, 2), minval=-1.0, maxval=1.0)
        s = TinyNavState(
            position=jnp.array([-1.5, 0.0]) + noise[0],
            goal=jnp.array([1.5, 0.0]) + noise[1],
            hazard=jnp.array([0.0, 0.0]) + noise[2],
        )
        zero = jnp.zeros(())
        return State(
            pipeline_state=s, obs=self._obs(s), reward=zero, done=zero, metrics={},
            info={"cost": zero},
        )

    def step(self, state: State, action: jax.Array) -> State:
        s: TinyNavState = state.pipeline_state
        action = jnp.clip(action, -1.0, 1.0)
        position = s.position + self.step_size * action
        previous = jnp.linalg.norm(s.goal - s.position)
        distance = jnp.linalg.norm(s.goal - position)
        reward = previous - distance + self.goal_bonus * (distance <= self.goal_radius)
        cost = (jnp.linalg.norm(position - s.hazard) < self.hazard_radius).astype(jnp.float32)
        s = s.replace(position=position)
        info = dict(state.info)
        info["cost"] = cost
        return state.replace(pipeline_state=s, obs=self._obs(s), reward=reward, info=info)


def make_tiny_hazard_nav(episode_length: int = 50, **kwargs) -> Env:
    env = TimeLimit(TinyHazardNav(**kwargs), episode_length)
    return env


def _factory(
    episode_length: int = 50,
    hazard_radius: float = 0.5,
    goal_radius: float = 0.2,
    goal_bonus: float = 0.1,
    step_size: float = 0.1,
    spawn_noise: float = 0.2,
) -> Env:
    return make_tiny_hazard_nav(
        episode_length, hazard_radius=hazard_radius, goal_radius=goal_radius,
        goal_bonus=goal_bonus, step_size=step_size, spawn_noise=spawn_noise,
    )
