"""Locomotion tasks: costs against NumPy/MuJoCo references, overrides, time limit, determinism.

MJX compilations are slow on a CPU, so two jitted, vmapped rollouts (one per task family) are
shared by the tests; the other robots' costs are checked on hand-built states (no compile).
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from brax.base import Transform
from helpers import fresh_rng, fresh_seed

import envs
from envs import locomotion

VELOCITY_NAMES = [f"Safety{r}Velocity" for r in
                  ("Ant", "HalfCheetah", "Hopper", "Walker2d", "Swimmer", "Humanoid")]
FALL_NAMES = ["SafetyAntFall", "SafetyWalker2dFall"]
# Gymnasium v4 control steps (timestep * frame_skip).
GYM_DT = {"Ant": 0.05, "HalfCheetah": 0.05, "Hopper": 0.008, "Walker2d": 0.008,
          "Swimmer": 0.04, "Humanoid": 0.015}
# Safety-Gymnasium 1.0's velocity limits of its Velocity-v1 tasks (the `_velocity_threshold`
# of safety_gymnasium/tasks/safe_velocity/safety_<robot>_velocity_v1.py), written out here.
SAFETY_GYMNASIUM_V1_THRESHOLDS = {"Ant": 2.6222, "HalfCheetah": 3.2096, "Hopper": 0.7402,
                                  "Walker2d": 2.3415, "Swimmer": 0.2282, "Humanoid": 1.4149}


def _make_rollout(env, qd_index: int, q_index: int | None = None):
    """jit(vmap(rollout)): reset, overwrite one velocity (and one position), then step."""
    inner = env.unwrapped

    def rollout(key, q_value, qd_value, actions):
        state = env.reset(key)
        ps = state.pipeline_state
        q = ps.q if q_index is None else ps.q.at[q_index].set(q_value)
        ps = inner.pipeline_init(q, ps.qd.at[qd_index].set(qd_value))
        state = state.replace(pipeline_state=ps)

        def body(s, a):
            nxt = env.step(s, a)
            return nxt, nxt

        _, traj = jax.lax.scan(body, state, actions)
        return state, traj

    return jax.jit(jax.vmap(rollout))


def _actions(key, batch: int, steps: int, size: int) -> jax.Array:
    return jax.random.uniform(key, (batch, steps, size), minval=-1.0, maxval=1.0)


CHEETAH_EPISODE = 4
CHEETAH_STEPS = 6


@pytest.fixture(scope="module")
def cheetah():
    env = envs.make("SafetyHalfCheetahVelocity", episode_length=CHEETAH_EPISODE)
    return env, _make_rollout(env, qd_index=0)


def _run_cheetah(cheetah, seed: int):
    env, rollout = cheetah
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    qd0 = jnp.array([0.0, 1.0, 3.0, 5.0, 8.0, 12.0])  # initial forward velocities
    acts = _actions(jax.random.PRNGKey(seed + 100), 6, CHEETAH_STEPS, env.action_size)
    return rollout(keys, jnp.zeros(6), qd0, acts)


def _forward_speeds(start, traj, dt) -> np.ndarray:
    x = np.concatenate([np.asarray(start.pipeline_state.q[:, None, 0]),
                        np.asarray(traj.pipeline_state.q[:, :, 0])], axis=1)
    return np.diff(x, axis=1) / dt


def test_velocity_cost_is_forward_speed_above_threshold(cheetah):
    env, _ = cheetah
    start, traj = _run_cheetah(cheetah, fresh_seed())
    speeds = _forward_speeds(start, traj, float(env.dt))
    cost = np.asarray(traj.info["cost"])
    assert cost.shape == (6, CHEETAH_STEPS)
    expected = (speeds > locomotion.VELOCITY_THRESHOLDS["HalfCheetah"]).astype(np.float32)
    assert 0 < expected.sum() < expected.size, "test needs both safe and unsafe steps"
    np.testing.assert_array_equal(cost, expected)


def test_velocity_threshold_override_changes_the_cost(cheetah):
    env, _ = cheetah
    start, traj = _run_cheetah(cheetah, fresh_seed())
    speeds = _forward_speeds(start, traj, float(env.dt))
    threshold = float(np.median(speeds))
    other = envs.make("SafetyHalfCheetahVelocity", velocity_threshold=threshold)
    assert other.velocity_threshold == threshold
    cost_fn = other.env.cost_fn  # TimeLimit(WithCost(...)): no compilation needed
    prev = jax.tree.map(lambda a, b: jnp.concatenate([a[:, None], b[:, :-1]], axis=1),
                        start.pipeline_state, traj.pipeline_state)
    cost = jax.vmap(jax.vmap(lambda p, n: cost_fn(SimpleNamespace(pipeline_state=p),
                                                  SimpleNamespace(pipeline_state=n), None)))(
        prev, traj.pipeline_state)
    np.testing.assert_array_equal(np.asarray(cost), (speeds > threshold).astype(np.float32))
    assert 0 < np.asarray(cost).sum() < cost.size


def test_time_limit_truncates_at_episode_length(cheetah):
    start, traj = _run_cheetah(cheetah, fresh_seed())
    # Up to and including the limit (later steps of an episode that was not reset are moot).
    truncation = np.asarray(traj.info["truncation"])[:, :CHEETAH_EPISODE]
    done = np.asarray(traj.done)[:, :CHEETAH_EPISODE]
    expected = (np.arange(1, CHEETAH_EPISODE + 1) == CHEETAH_EPISODE).astype(np.float32)
    np.testing.assert_array_equal(truncation, np.broadcast_to(expected, truncation.shape))
    np.testing.assert_array_equal(done, truncation)  # HalfCheetah never terminates
    np.testing.assert_array_equal(np.asarray(traj.info["steps"][0]),
                                  np.arange(1, CHEETAH_STEPS + 1))


def test_rollouts_are_deterministic_per_key(cheetah):
    seed = fresh_seed()
    a_start, a = _run_cheetah(cheetah, seed)
    b_start, b = _run_cheetah(cheetah, seed)
    c_start, c = _run_cheetah(cheetah, seed + 1)
    for x, y in [(a.obs, b.obs), (a.reward, b.reward), (a.info["cost"], b.info["cost"]),
                 (a_start.obs, b_start.obs)]:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.allclose(np.asarray(a_start.obs), np.asarray(c_start.obs))
    assert a.obs.shape == (6, CHEETAH_STEPS, 17)
    assert a.obs.dtype == jnp.float32 and a.reward.dtype == jnp.float32


WALKER_EPISODE = 8


@pytest.fixture(scope="module")
def walker():
    env = envs.make("SafetyWalker2dFall", episode_length=WALKER_EPISODE)
    return env, _make_rollout(env, qd_index=2, q_index=2)  # torso angle and its rate


def test_fall_cost_fires_on_the_step_leaving_the_healthy_range(walker):
    env, rollout = walker
    batch = 5
    angle0 = jnp.array([0.0, 0.9, -0.9, 0.95, 0.5])
    rate0 = jnp.array([0.0, 6.0, -6.0, -4.0, 20.0])
    reset_key, action_key = jax.random.split(jax.random.PRNGKey(fresh_seed()))
    keys = jax.random.split(reset_key, batch)
    acts = 0.1 * _actions(action_key, batch, WALKER_EPISODE, env.action_size)
    start, traj = rollout(keys, angle0, rate0, acts)
    z = np.asarray(traj.pipeline_state.x.pos[:, :, 0, 2])
    angle = np.asarray(traj.pipeline_state.q[:, :, 2])
    unhealthy = ~((z > 0.8) & (z < 2.0) & (np.abs(angle) < 1.0))
    z0 = np.asarray(start.pipeline_state.x.pos[:, 0, 2])
    assert np.all((z0 > 0.8) & (np.abs(np.asarray(angle0)) < 1.0)), "starts must be healthy"
    cost = np.asarray(traj.info["cost"])
    np.testing.assert_array_equal(cost, unhealthy.astype(np.float32))
    fell = unhealthy.any(axis=1)
    assert fell.any() and not fell.all(), "test needs falling and standing walkers"
    # The first costly step is the first unhealthy one, and the episode terminates there.
    for b in np.flatnonzero(fell):
        first = int(np.argmax(unhealthy[b]))
        assert cost[b, :first].sum() == 0 and cost[b, first] == 1
        assert traj.done[b, first] == 1 and traj.info["truncation"][b, first] == 0
    # Brax's termination agrees with our health check on every step before the time limit.
    before_limit = np.arange(1, WALKER_EPISODE + 1) < WALKER_EPISODE
    np.testing.assert_array_equal(np.asarray(traj.done)[:, before_limit],
                                  cost[:, before_limit])


def _ant_state(xy: np.ndarray, z: float = 0.5):
    pos = np.zeros((9, 3), np.float32)
    pos[0, :2], pos[0, 2] = xy, z
    return SimpleNamespace(pipeline_state=SimpleNamespace(x=SimpleNamespace(pos=jnp.asarray(pos))))


def test_ant_velocity_cost_uses_planar_torso_speed():
    env = envs.make("SafetyAntVelocity")
    rng = fresh_rng()
    dt, limit = float(env.dt), locomotion.VELOCITY_THRESHOLDS["Ant"]
    for _ in range(20):
        before = rng.normal(size=2)
        delta = rng.normal(size=2) * limit * dt / 1.2  # speeds straddle the threshold
        expected = float(np.hypot(*delta) / dt > limit)
        got = env.env.cost_fn(_ant_state(before), _ant_state(before + delta), None)
        assert float(got) == expected


def test_ant_fall_cost_uses_inclusive_height_range():
    env = envs.make("SafetyAntFall")
    heights = [0.1, 0.19, 0.2, 0.5, 1.0, 1.01, 1.3]
    heights += list(fresh_rng().uniform(0, 1.2, 8))
    for z in heights:
        got = env.env.cost_fn(None, _ant_state(np.zeros(2), z=np.float32(z)), None)
        z32 = np.float32(z)
        assert float(got) == float(not (np.float32(0.2) <= z32 <= np.float32(1.0))), z


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_humanoid_centre_of_mass_matches_mujoco():
    env = envs.make("SafetyHumanoidVelocity")
    sys = env.unwrapped.sys
    model = sys.mj_model
    data = mujoco.MjData(model)
    rng = fresh_rng()
    dt, limit = float(env.dt), locomotion.VELOCITY_THRESHOLDS["Humanoid"]

    def state_at(qpos):
        data.qpos[:] = qpos
        mujoco.mj_forward(model, data)
        # MuJoCo's mass centre as Gymnasium computes it: mass-weighted body inertial frames.
        com = (model.body_mass[:, None] * data.xipos).sum(0) / model.body_mass.sum()
        x = Transform(pos=jnp.asarray(data.xpos[1:], jnp.float32),
                      rot=jnp.asarray(data.xquat[1:], jnp.float32))
        return SimpleNamespace(pipeline_state=SimpleNamespace(x=x)), com

    for _ in range(6):
        qpos = model.qpos0.copy()
        qpos[7:] += rng.uniform(-0.5, 0.5, model.nq - 7)
        quat = rng.normal(size=4)
        qpos[3:7] = quat / np.linalg.norm(quat)
        before, com_before = state_at(qpos)
        np.testing.assert_allclose(
            np.asarray(locomotion.centre_of_mass(sys, before.pipeline_state)), com_before,
            atol=1e-5)
        qpos2 = qpos.copy()
        qpos2[:2] += rng.normal(size=2) * limit * dt / 1.2
        qpos2[7:] += rng.uniform(-0.05, 0.05, model.nq - 7)
        after, com_after = state_at(qpos2)
        expected = float(np.hypot(*(com_after - com_before)[:2]) / dt > limit)
        assert float(env.env.cost_fn(before, after, None)) == expected
    # The NumPy rotation helper agrees with MuJoCo (it is the reference for inertial offsets).
    np.testing.assert_allclose(_quat_to_matrix(data.xquat[1]),
                               data.xmat[1].reshape(3, 3), atol=1e-6)


def test_registry_names_and_control_steps():
    names = envs.list_envs()
    for name in VELOCITY_NAMES + FALL_NAMES:
        assert name in names
    for robot, dt in GYM_DT.items():
        env = envs.make(f"Safety{robot}Velocity")
        assert float(env.dt) == pytest.approx(dt, rel=1e-6)
        assert env.episode_length == 1000
        assert env.velocity_threshold == SAFETY_GYMNASIUM_V1_THRESHOLDS[robot]
    assert envs.make("SafetySwimmerVelocity").backend == "generalized"
    assert envs.make("SafetyAntFall").backend == "mjx"


def test_brax_kwargs_and_backends_pass_through():
    env = envs.make("SafetyHopperVelocity", backend="generalized",
                    brax_kwargs={"ctrl_cost_weight": 0.25})
    assert env.backend == "generalized"
    assert env.unwrapped._ctrl_cost_weight == 0.25


@pytest.mark.parametrize("name, overrides, words", [
    ("SafetyAntVelocity", {"velocity_limit": 1.0}, "velocity_limit"),
    ("SafetyAntFall", {"velocity_threshold": 1.0}, "velocity_threshold"),
    ("SafetyAntVelocity", {"backend": "warp"}, "'warp'"),
    ("SafetySwimmerVelocity", {"backend": "mjx"}, "generalized"),
    ("SafetyHopperVelocity", {"episode_length": 0}, "episode_length"),
    ("SafetyHopperVelocity", {"velocity_threshold": float("nan")}, "velocity_threshold"),
    ("SafetyHopperVelocity", {"velocity_threshold": -1.0}, "velocity_threshold"),
    ("SafetyHopperVelocity", {"brax_kwargs": {"ctrl_cost": 1.0}}, "ctrl_cost_weight"),
    ("SafetyHopperVelocity", {"brax_kwargs": {"backend": "mjx"}}, "backend"),
    ("SafetyWalker2dFall", {"brax_kwargs": {"healthy_z_range": (0.5, 2.0)}}, "healthy_z_range"),
    ("SafetyAntSprint", {}, "SafetyAntVelocity"),
])
def test_bad_overrides_raise_clear_errors(name, overrides, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        envs.make(name, **overrides)
