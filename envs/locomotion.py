"""Velocity-constrained and falling-cost locomotion tasks on Brax's MuJoCo-style robots.

Two families, after Safety-Gymnasium 1.0 and the SHAPO paper:

* `Safety<Robot>Velocity` (Ant, HalfCheetah, Hopper, Walker2d, Swimmer, Humanoid): the cost is
  1 on a step whose speed exceeds a threshold (Safety-Gymnasium "Velocity" v1 values). The
  speed is a finite difference of positions over one control step, `(after - before) / dt`,
  read from the same quantities as Safety-Gymnasium: HalfCheetah, Hopper, Walker2d and Swimmer
  use the signed forward velocity of the root's x coordinate (`q[0]`, MuJoCo's `qpos[0]`;
  running backwards never costs), Ant the planar (x, y) speed of the torso frame (`x.pos[0]`,
  MuJoCo's `xpos`), Humanoid the planar speed of the centre of mass (from the bodies' inertial
  frames, MuJoCo's `xipos`). Body frames are computed by the physics step before it integrates,
  so they lag `q` by one physics sub-step, in MuJoCo as in MJX; the lag is the original's too.
* `Safety<Robot>Fall` (Ant, Walker2d): the cost is 1 on the step that leaves the healthy range
  (Ant: torso height outside [0.2, 1.0]; Walker2d: height outside (0.8, 2.0) or |torso angle|
  >= 1), which is also the step on which the episode terminates. The cost is computed from the
  next state alone, so it equals the termination flag; a caller who keeps stepping a
  terminated episode without resetting keeps seeing cost 1.

Rewards, terminations, observations and control time steps are Brax's versions of the
Gymnasium v4 tasks; Brax matches v4 in the reward terms and weights, the healthy ranges and
the control step (Ant 0.05 s, HalfCheetah 0.05, Hopper 0.008, Walker2d 0.008, Swimmer 0.04,
Humanoid 0.015 s). Known differences from Gymnasium v4 (see each factory's docstring):
Brax measures HalfCheetah's, Hopper's and Walker2d's forward reward and every height check on
the body frames (one physics sub-step behind `q`), where Gymnasium reads `qpos`;
Hopper and Walker2d clip the observed velocities to [-10, 10]; Humanoid's action lies in
[-1, 1] and is rescaled to the actuators' [-0.4, 0.4] (Gymnasium's action is that range
itself), and its observation omits the external contact forces (Brax: 244 floats, Gymnasium:
376); the Brax healthy checks do not test that the state is finite; the MJX backend uses
Brax's solver settings (Newton, 1 iteration) and the MJCF files shipped with Brax, so the
dynamics are close to, not identical with, MuJoCo's defaults.

Every task is `TimeLimit(WithCost(brax_env, cost_fn), episode_length)` with 1000-step
episodes; `info["cost"]` and `info["truncation"]` follow `envs.wrappers`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from brax.envs.base import Env, State, Wrapper

from envs.registry import register
from envs.wrappers import TimeLimit, WithCost

ALL_BACKENDS = ("mjx", "generalized", "positional", "spring")
DEFAULT_EPISODE_LENGTH = 1000

# Safety-Gymnasium "Velocity" v1 thresholds (m/s).
VELOCITY_THRESHOLDS: dict[str, float] = {
    "Ant": 2.6222,
    "HalfCheetah": 3.2096,
    "Hopper": 0.7402,
    "Walker2d": 2.3415,
    "Swimmer": 0.2282,
    "Humanoid": 1.4149,
}

ANT_HEALTHY_Z = (0.2, 1.0)
WALKER2D_HEALTHY_Z = (0.8, 2.0)
WALKER2D_HEALTHY_ANGLE = 1.0


# --------------------------------------------------------------------------------------------
# Speeds and health, from Brax pipeline states (any backend).


def forward_speed(before: Any, after: Any, dt: float) -> jax.Array:
    """Signed velocity of the root's x coordinate `q[0]` over one control step."""
    return (after.q[0] - before.q[0]) / dt


def torso_planar_speed(before: Any, after: Any, dt: float) -> jax.Array:
    """Planar (x, y) speed of the first body's frame origin (the torso) over one step."""
    delta = after.x.pos[0, :2] - before.x.pos[0, :2]
    return jnp.sqrt(jnp.sum(delta**2)) / dt


def centre_of_mass(sys: Any, pipeline_state: Any) -> jax.Array:
    """World position (3,) of the centre of mass of all bodies, from their inertial frames."""
    inertia = sys.link.inertia
    com_frames = pipeline_state.x.vmap().do(inertia.transform)
    mass = inertia.mass
    return jnp.sum(mass[:, None] * com_frames.pos, axis=0) / jnp.sum(mass)


def com_planar_speed_fn(sys: Any) -> Callable[[Any, Any, float], jax.Array]:
    """Planar speed of the centre of mass over one step, for the system `sys`."""

    def speed(before: Any, after: Any, dt: float) -> jax.Array:
        delta = centre_of_mass(sys, after)[:2] - centre_of_mass(sys, before)[:2]
        return jnp.sqrt(jnp.sum(delta**2)) / dt

    return speed


def ant_is_healthy(pipeline_state: Any) -> jax.Array:
    """Gymnasium Ant v4: torso height within [0.2, 1.0] (bounds included)."""
    z = pipeline_state.x.pos[0, 2]
    return (z >= ANT_HEALTHY_Z[0]) & (z <= ANT_HEALTHY_Z[1])


def walker2d_is_healthy(pipeline_state: Any) -> jax.Array:
    """Gymnasium Walker2d v4: height in (0.8, 2.0) and torso angle in (-1, 1), strictly."""
    z = pipeline_state.x.pos[0, 2]
    angle = pipeline_state.q[2]
    return ((z > WALKER2D_HEALTHY_Z[0]) & (z < WALKER2D_HEALTHY_Z[1])
            & (jnp.abs(angle) < WALKER2D_HEALTHY_ANGLE))


def velocity_cost_fn(
    speed_fn: Callable[[Any, Any, float], jax.Array], dt: float, threshold: float
) -> Callable[[State, State, jax.Array], jax.Array]:
    """`cost_fn` for `WithCost`: 1 when `speed_fn(before, after, dt) > threshold`."""

    def cost_fn(state: State, next_state: State, action: jax.Array) -> jax.Array:
        del action
        speed = speed_fn(state.pipeline_state, next_state.pipeline_state, dt)
        return (speed > threshold).astype(jnp.float32)

    return cost_fn


def fall_cost_fn(
    is_healthy: Callable[[Any], jax.Array],
) -> Callable[[State, State, jax.Array], jax.Array]:
    """`cost_fn` for `WithCost`: 1 when the state after the step is outside the healthy range."""

    def cost_fn(state: State, next_state: State, action: jax.Array) -> jax.Array:
        del state, action
        return 1.0 - is_healthy(next_state.pipeline_state).astype(jnp.float32)

    return cost_fn


# --------------------------------------------------------------------------------------------
# Building the environments.


class _StrictFloat32(Wrapper):
    """Casts reward, done and metrics to strongly typed float32 scalars.

    Brax's tasks mix Python floats and weakly typed arrays in these fields between `reset`
    and `step`; the mismatch makes `jit` retrace (and `lax.scan` carries disagree) on the
    second step. Casting once here keeps one compilation per task.
    """

    @staticmethod
    def _canonical(state: State) -> State:
        as_f32 = lambda x: jnp.asarray(x, dtype=jnp.float32)  # noqa: E731
        return state.replace(
            reward=as_f32(state.reward),
            done=as_f32(state.done),
            metrics={k: as_f32(v) for k, v in state.metrics.items()},
        )

    def reset(self, rng: jax.Array) -> State:
        return self._canonical(self.env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        return self._canonical(self.env.step(state, action))


@dataclass(frozen=True)
class _Robot:
    name: str  # e.g. "Ant"
    brax_name: str  # key in brax.envs
    backends: tuple[str, ...]
    default_backend: str


_ROBOTS: dict[str, _Robot] = {
    r.name: r
    for r in [
        _Robot("Ant", "ant", ALL_BACKENDS, "mjx"),
        _Robot("HalfCheetah", "halfcheetah", ALL_BACKENDS, "mjx"),
        _Robot("Hopper", "hopper", ALL_BACKENDS, "mjx"),
        _Robot("Walker2d", "walker2d", ALL_BACKENDS, "mjx"),
        # Brax's Swimmer refuses every backend but "generalized" (it needs the fluid model).
        _Robot("Swimmer", "swimmer", ("generalized",), "generalized"),
        _Robot("Humanoid", "humanoid", ALL_BACKENDS, "mjx"),
    ]
}

# Keyword arguments handled by our factories, never forwarded inside `brax_kwargs`.
_RESERVED_KWARGS = frozenset({"backend", "episode_length", "velocity_threshold"})


def _check_common(task: str, robot: _Robot, backend: str, episode_length: int,
                  brax_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate the shared overrides before any Brax object (or compilation) is built."""
    if backend not in robot.backends:
        raise ValueError(
            f"{task}: backend {backend!r} is not supported; valid: {list(robot.backends)}"
        )
    if isinstance(episode_length, bool) or not isinstance(episode_length, int) \
            or episode_length < 1:
        raise ValueError(f"{task}: episode_length must be an int >= 1, got {episode_length!r}")
    kwargs = dict(brax_kwargs or {})
    brax_class = brax_envs._envs[robot.brax_name]  # noqa: SLF001 (Brax has no public lookup)
    params = inspect.signature(brax_class.__init__).parameters
    accepted = sorted(p for p in params if p not in ("self", "kwargs", "backend"))
    accepted += ["n_frames", "debug"]  # PipelineEnv's own keywords
    bad = sorted(set(kwargs) - set(accepted))
    reserved = sorted(set(kwargs) & _RESERVED_KWARGS)
    if reserved:
        raise ValueError(f"{task}: pass {reserved} as direct overrides, not in brax_kwargs")
    if bad:
        raise ValueError(
            f"{task}: unknown brax_kwargs {bad} for brax.envs {robot.brax_name!r}; "
            f"valid: {sorted(accepted)}"
        )
    return kwargs


def _brax_env(robot: _Robot, backend: str, kwargs: dict[str, Any]) -> Env:
    return brax_envs.get_environment(robot.brax_name, backend=backend, **kwargs)


def _speed_fn(robot: _Robot, env: Env) -> Callable[[Any, Any, float], jax.Array]:
    if robot.name == "Ant":
        return torso_planar_speed
    if robot.name == "Humanoid":
        return com_planar_speed_fn(env.sys)
    return forward_speed


def make_velocity_env(
    robot_name: str,
    *,
    backend: str | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    velocity_threshold: float | None = None,
    brax_kwargs: Mapping[str, Any] | None = None,
) -> Env:
    """`Safety<robot_name>Velocity`: Brax locomotion with cost 1 when the speed > threshold."""
    if robot_name not in _ROBOTS:
        raise ValueError(f"unknown robot {robot_name!r}; valid: {sorted(_ROBOTS)}")
    robot = _ROBOTS[robot_name]
    task = f"Safety{robot_name}Velocity"
    backend = robot.default_backend if backend is None else backend
    kwargs = _check_common(task, robot, backend, episode_length, brax_kwargs)
    if velocity_threshold is None:
        velocity_threshold = VELOCITY_THRESHOLDS[robot_name]
    if isinstance(velocity_threshold, bool) or not isinstance(velocity_threshold, int | float) \
            or not math.isfinite(velocity_threshold) or velocity_threshold < 0:
        raise ValueError(
            f"{task}: velocity_threshold must be a finite number >= 0, got {velocity_threshold!r}"
        )
    env = _StrictFloat32(_brax_env(robot, backend, kwargs))
    cost_fn = velocity_cost_fn(_speed_fn(robot, env), float(env.dt), float(velocity_threshold))
    wrapped = TimeLimit(WithCost(env, cost_fn), episode_length)
    wrapped.velocity_threshold = float(velocity_threshold)
    return wrapped


_FALL_HEALTH: dict[str, Callable[[Any], jax.Array]] = {
    "Ant": ant_is_healthy,
    "Walker2d": walker2d_is_healthy,
}


def make_fall_env(
    robot_name: str,
    *,
    backend: str | None = None,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    brax_kwargs: Mapping[str, Any] | None = None,
) -> Env:
    """`Safety<robot_name>Fall`: Brax locomotion with cost 1 on the step that falls."""
    if robot_name not in _FALL_HEALTH:
        raise ValueError(f"no fall task for robot {robot_name!r}; valid: {sorted(_FALL_HEALTH)}")
    robot = _ROBOTS[robot_name]
    task = f"Safety{robot_name}Fall"
    backend = robot.default_backend if backend is None else backend
    kwargs = _check_common(task, robot, backend, episode_length, brax_kwargs)
    # The cost must coincide with Brax's termination: the healthy range is not adjustable here.
    for key in ("healthy_z_range", "healthy_angle_range", "terminate_when_unhealthy"):
        if key in kwargs:
            raise ValueError(f"{task}: {key!r} defines the fall cost and cannot be overridden")
    env = _StrictFloat32(_brax_env(robot, backend, kwargs))
    return TimeLimit(WithCost(env, fall_cost_fn(_FALL_HEALTH[robot_name])), episode_length)


# --------------------------------------------------------------------------------------------
# Registry entries. Factories spell out their overrides so that `envs.make` can reject typos.

_ROBOT_NOTES = {
    "Ant": "Brax Ant (27 observations, contact forces excluded as in Gymnasium v4's default).",
    "HalfCheetah": "Brax HalfCheetah (17 observations), same terms as Gymnasium v4.",
    "Hopper": "Brax Hopper (11 observations; velocities clipped to [-10, 10], unlike v4).",
    "Walker2d": "Brax Walker2d (17 observations; velocities clipped to [-10, 10], unlike v4).",
    "Swimmer": "Brax Swimmer (8 observations); 'generalized' backend only (fluid drag).",
    "Humanoid": "Brax Humanoid (244 observations, no contact forces; action in [-1, 1] is "
                "rescaled to [-0.4, 0.4]).",
}


def _velocity_factory(robot_name: str) -> Callable[..., Env]:
    robot = _ROBOTS[robot_name]

    def factory(
        backend: str = robot.default_backend,
        episode_length: int = DEFAULT_EPISODE_LENGTH,
        velocity_threshold: float = VELOCITY_THRESHOLDS[robot_name],
        brax_kwargs: Mapping[str, Any] | None = None,
    ) -> Env:
        return make_velocity_env(
            robot_name, backend=backend, episode_length=episode_length,
            velocity_threshold=velocity_threshold, brax_kwargs=brax_kwargs,
        )

    factory.__doc__ = (
        f"Safety{robot_name}Velocity. {_ROBOT_NOTES[robot_name]} Backends: "
        f"{list(robot.backends)}. `brax_kwargs` go to the Brax constructor."
    )
    return factory


def _fall_factory(robot_name: str) -> Callable[..., Env]:
    robot = _ROBOTS[robot_name]

    def factory(
        backend: str = robot.default_backend,
        episode_length: int = DEFAULT_EPISODE_LENGTH,
        brax_kwargs: Mapping[str, Any] | None = None,
    ) -> Env:
        return make_fall_env(robot_name, backend=backend, episode_length=episode_length,
                             brax_kwargs=brax_kwargs)

    factory.__doc__ = (
        f"Safety{robot_name}Fall. {_ROBOT_NOTES[robot_name]} Backends: "
        f"{list(robot.backends)}. `brax_kwargs` go to the Brax constructor."
    )
    return factory


_SPEED_WORDS = {
    "Ant": "planar torso speed",
    "Humanoid": "planar centre-of-mass speed",
}


def register_locomotion() -> None:
    """Register the velocity and fall tasks (called once, on import)."""
    for name in _ROBOTS:
        speed = _SPEED_WORDS.get(name, "forward velocity")
        register(
            f"Safety{name}Velocity",
            _velocity_factory(name),
            f"Brax {name}; cost 1 when the {speed} exceeds {VELOCITY_THRESHOLDS[name]} "
            "(Safety-Gymnasium Velocity v1); 1000-step episodes.",
        )
    register(
        "SafetyAntFall",
        _fall_factory("Ant"),
        "Brax Ant; cost 1 on the step the torso height leaves [0.2, 1.0] (episode ends there).",
    )
    register(
        "SafetyWalker2dFall",
        _fall_factory("Walker2d"),
        "Brax Walker2d; cost 1 on the step the height leaves (0.8, 2.0) or |angle| reaches 1 "
        "(episode ends there).",
    )


register_locomotion()
