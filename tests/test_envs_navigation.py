"""Tests of the Safety-Gymnasium navigation ports: lidar, layouts, costs, rewards, robots."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from helpers import fresh_rng, fresh_seed

import envs
from envs.navigation import (
    NavConfig,
    SafetyNavigation,
    build_mjcf,
    egocentric_xy,
    pseudo_lidar,
    sample_layout,
)

BIN = 2 * math.pi / 16


# ------------------------------------------------------------------------- NumPy references
def reference_lidar(ego_xy: np.ndarray, num_bins: int = 16, max_dist: float = 3.0) -> np.ndarray:
    """Loop version of the pseudo-lidar, written from its description."""
    obs = np.zeros(num_bins)
    size = 2 * np.pi / num_bins
    for x, y in ego_xy:
        dist = math.hypot(x, y)
        angle = math.atan2(y, x) % (2 * np.pi)
        b = int(angle / size) % num_bins
        reading = max(0.0, max_dist - dist) / max_dist
        frac = (angle - b * size) / size
        obs[b] = max(obs[b], reading)
        obs[(b + 1) % num_bins] = max(obs[(b + 1) % num_bins], frac * reading)
        obs[(b - 1) % num_bins] = max(obs[(b - 1) % num_bins], (1 - frac) * reading)
    return obs


def polar(dist: float, angle: float) -> list[float]:
    return [dist * math.cos(angle), dist * math.sin(angle)]


# ------------------------------------------------------------------------------------ lidar
def test_lidar_hand_computed_bins():
    # 1.5 m straight ahead: bin 0 reads 0.5; at the bin's start, all aliasing goes backwards.
    obs = np.asarray(pseudo_lidar(jnp.array([polar(1.5, 1e-6)])))
    assert obs[0] == pytest.approx(0.5, abs=1e-5)
    assert obs[15] == pytest.approx(0.5, abs=1e-5)
    assert obs[1] == pytest.approx(0.0, abs=1e-5)
    assert np.count_nonzero(obs[2:15]) == 0
    # 0.6 m at 30 degrees: bin 1, a third of the way in; reading 0.8.
    obs = np.asarray(pseudo_lidar(jnp.array([polar(0.6, math.radians(30))])))
    assert obs[1] == pytest.approx(0.8, abs=1e-5)
    assert obs[2] == pytest.approx(0.8 / 3, abs=1e-5)
    assert obs[0] == pytest.approx(0.8 * 2 / 3, abs=1e-5)
    # Behind on the right (-100 degrees = 260): bin 11, fraction 5/9; out of range reads 0.
    obs = np.asarray(pseudo_lidar(jnp.array([polar(2.4, math.radians(-100)),
                                             polar(3.5, 0.3)])))
    assert obs[11] == pytest.approx(0.2, abs=1e-5)
    assert obs[12] == pytest.approx(0.2 * 5 / 9, abs=1e-5)
    assert obs[10] == pytest.approx(0.2 * 4 / 9, abs=1e-5)
    assert np.count_nonzero(obs) == 3


def test_lidar_linear_falloff_and_max_over_objects():
    dists = np.linspace(0.0, 3.5, 8)
    readings = [float(pseudo_lidar(jnp.array([polar(d, 0.5 * BIN)]))[0]) for d in dists]
    np.testing.assert_allclose(readings, np.maximum(0, 3 - dists) / 3, atol=1e-5)
    # Two objects in one bin: the nearer one wins; a masked object is invisible.
    both = jnp.array([polar(2.0, 0.4 * BIN), polar(1.0, 0.6 * BIN)])
    assert float(pseudo_lidar(both)[0]) == pytest.approx(2 / 3, abs=1e-5)
    masked = pseudo_lidar(both, mask=jnp.array([True, False]))
    assert float(masked[0]) == pytest.approx(1 / 3, abs=1e-5)


def test_lidar_matches_reference_on_random_objects():
    rng = fresh_rng()
    ego = rng.uniform(-4, 4, size=(9, 2))
    np.testing.assert_allclose(np.asarray(pseudo_lidar(jnp.asarray(ego))),
                               reference_lidar(ego), atol=1e-5)


def test_egocentric_frame_follows_yaw():
    yaw = 0.5 * math.pi  # the robot faces +y: an object at +y lies straight ahead
    c, s = math.cos(yaw), math.sin(yaw)
    mat = jnp.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    ego = egocentric_xy(jnp.array([1.0, 1.0, 0.1]), mat, jnp.array([[1.0, 2.0], [0.0, 1.0]]))
    np.testing.assert_allclose(np.asarray(ego), [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)


# ----------------------------------------------------------------------------------- layout
def test_layout_respects_keepouts_and_extents():
    keepouts = jnp.array([0.4, 0.305] + [0.18] * 8 + [0.15])
    extents = (-1.5, -1.5, 1.5, 1.5)
    keys = jax.random.split(jax.random.PRNGKey(fresh_seed()), 64)
    xy, ok = jax.jit(jax.vmap(lambda k: sample_layout(k, keepouts, extents)))(keys)
    xy, ok, k = np.asarray(xy), np.asarray(ok), np.asarray(keepouts)
    assert ok.mean() > 0.95
    for layout in xy[ok]:
        dist = np.linalg.norm(layout[:, None] - layout[None], axis=-1)
        need = k[:, None] + k[None, :]
        off = ~np.eye(len(k), dtype=bool)
        assert np.all(dist[off] >= need[off] - 1e-6)
        assert np.all(np.abs(layout) <= 1.5 - k[:, None] + 1e-6)
    # The layouts differ between keys (it is random) and are spread over the area.
    assert np.std(xy[:, 0, 0]) > 0.3


# --------------------------------------------------------------------------- env fixtures
@pytest.fixture(scope="module")
def goal1():
    env = envs.make("SafetyPointGoal1", episode_length=5)
    inner = env.env
    return env, jax.jit(env.reset), jax.jit(env.step), inner


def with_layout(state, robot_xy=None, yaw=None, goal=None, hazards=None, last_dist=None):
    s = state.pipeline_state
    qpos = s.data.qpos
    if robot_xy is not None:
        qpos = qpos.at[:2].set(jnp.asarray(robot_xy))
    if yaw is not None:
        qpos = qpos.at[2].set(yaw)
    s = s.replace(data=s.data.replace(qpos=qpos, qvel=jnp.zeros_like(s.data.qvel)))
    if goal is not None:
        s = s.replace(goal_xy=jnp.asarray(goal, jnp.float32))
    if hazards is not None:
        s = s.replace(hazards_xy=jnp.asarray(hazards, jnp.float32))
    if last_dist is not None:
        s = s.replace(last_dist_goal=jnp.asarray(last_dist, jnp.float32))
    return state.replace(pipeline_state=s)


def far_vase(state):
    s = state.pipeline_state
    qpos = s.data.qpos.at[3:5].set(jnp.array([1.3, -1.3]))
    return state.replace(pipeline_state=s.replace(data=s.data.replace(qpos=qpos)))


def test_observation_sizes_and_blocks():
    sizes = {"SafetyPointGoal1": 60, "SafetyPointGoal2": 60, "SafetyPointButton1": 76,
             "SafetyPointButton2": 76, "SafetyCarGoal1": 72, "SafetyCarGoal2": 72,
             "SafetyPointGoal0": 28}
    for name, size in sizes.items():
        env = envs.make(name)
        assert env.observation_size == size, name
        assert env.action_size == 2
        assert sum(n for _, n in env.env.observation_blocks) == size
    goal = [b for b, _ in envs.make("SafetyPointGoal1").env.observation_blocks]
    assert goal == ["accelerometer", "velocimeter", "gyro", "magnetometer", "goal_lidar",
                    "hazards_lidar", "vases_lidar"]
    button = [b for b, _ in envs.make("SafetyPointButton1").env.observation_blocks]
    assert button[4:] == ["buttons_lidar", "goal_lidar", "hazards_lidar", "gremlins_lidar"]
    car = [b for b, _ in envs.make("SafetyCarGoal1").env.observation_blocks]
    assert car[4:] == ["ballangvel_rear", "ballquat_rear", "goal_lidar", "hazards_lidar",
                       "vases_lidar"]
    assert envs.make("SafetyPointGoal1").dt == pytest.approx(0.02)
    assert envs.make("SafetyCarGoal1").dt == pytest.approx(0.04)


def test_reset_observation_blocks_match_references(goal1):
    env, reset, _, inner = goal1
    state = reset(jax.random.PRNGKey(fresh_seed()))
    s = state.pipeline_state
    obs = np.asarray(state.obs)
    x, y, yaw = np.asarray(s.data.qpos[:3])
    np.testing.assert_allclose(obs[0:3], [0, 0, 9.81], atol=1e-5)  # accelerometer at rest
    np.testing.assert_allclose(obs[3:9], 0.0, atol=1e-6)
    # Magnetometer: field (0, -0.5, 0) seen from a body turned by yaw.
    np.testing.assert_allclose(obs[9:12], [-0.5 * math.sin(yaw), -0.5 * math.cos(yaw), 0.0],
                               atol=1e-5)
    rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])

    def ego(points):
        return (np.asarray(points) - [x, y]) @ rot

    np.testing.assert_allclose(obs[12:28], reference_lidar(ego(s.goal_xy[None])), atol=1e-5)
    np.testing.assert_allclose(obs[28:44], reference_lidar(ego(s.hazards_xy)), atol=1e-5)
    np.testing.assert_allclose(obs[44:60], reference_lidar(ego(s.data.qpos[None, 3:5])),
                               atol=1e-5)
    assert state.info["cost"] == 0.0
    assert state.info["layout_ok"] == 1.0


def test_reset_layout_keepouts(goal1):
    _, reset, _, inner = goal1
    states = jax.vmap(inner.reset)(jax.random.split(jax.random.PRNGKey(fresh_seed()), 16))
    s = states.pipeline_state
    for i in range(16):
        pts = np.concatenate([np.asarray(s.data.qpos[i, None, :2]), np.asarray(s.goal_xy[i, None]),
                              np.asarray(s.hazards_xy[i]), np.asarray(s.data.qpos[i, None, 3:5])])
        k = np.array([0.4, 0.305] + [0.18] * 8 + [0.15])
        dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        off = ~np.eye(len(k), dtype=bool)
        assert np.all(dist[off] >= (k[:, None] + k[None])[off] - 1e-5)
        assert np.all(np.abs(pts) <= 1.5 - k[:, None] + 1e-5)


def test_hazard_cost_is_indicator_of_disc(goal1):
    _, reset, step, _ = goal1
    base = far_vase(reset(jax.random.PRNGKey(fresh_seed())))
    hazards = np.full((8, 2), -1.4)
    hazards[0] = [0.3, 0.2]
    for offset, expected in [(0.0, 1.0), (0.12, 1.0), (0.19, 1.0), (0.21, 0.0), (0.5, 0.0)]:
        direction = np.array([math.cos(1.0), math.sin(1.0)])
        state = with_layout(base, robot_xy=hazards[0] + offset * direction, goal=[-1.0, 1.2],
                            hazards=hazards)
        nxt = step(state, jnp.zeros(2))
        assert float(nxt.info["cost"]) == expected, offset


def test_goal_reward_and_redraw(goal1):
    _, reset, step, _ = goal1
    base = far_vase(reset(jax.random.PRNGKey(fresh_seed())))
    hazards = np.array([[-1.2, -1.2 + 0.3 * i] for i in range(8)])
    # Reaching the goal: shaping (0.5 - 0.25) plus the bonus of 1, then a new goal.
    state = with_layout(base, robot_xy=[0.0, 0.0], goal=[0.25, 0.0], hazards=hazards,
                        last_dist=0.5)
    nxt = step(state, jnp.zeros(2))
    assert float(nxt.reward) == pytest.approx(1.25, abs=1e-4)
    assert float(nxt.info["goal_met"]) == 1.0
    s = nxt.pipeline_state
    new_goal = np.asarray(s.goal_xy)
    robot = np.asarray(s.data.qpos[:2])
    assert np.linalg.norm(new_goal - robot) >= 0.705 - 1e-5
    assert np.all(np.linalg.norm(hazards - new_goal, axis=-1) >= 0.485 - 1e-5)
    assert np.linalg.norm(new_goal - np.asarray(s.data.qpos[3:5])) >= 0.455 - 1e-5
    assert np.all(np.abs(new_goal) <= 1.5 - 0.305 + 1e-5)
    assert float(s.last_dist_goal) == pytest.approx(np.linalg.norm(new_goal - robot), abs=1e-5)
    # Not reaching it: shaping only, goal unchanged.
    state = with_layout(base, robot_xy=[0.0, 0.0], goal=[0.8, 0.0], hazards=hazards,
                        last_dist=0.9)
    nxt = step(state, jnp.zeros(2))
    assert float(nxt.reward) == pytest.approx(0.1, abs=1e-4)
    np.testing.assert_allclose(np.asarray(nxt.pipeline_state.goal_xy), [0.8, 0.0])


def test_forward_motor_saturates(goal1):
    _, reset, step, _ = goal1
    base = with_layout(far_vase(reset(jax.random.PRNGKey(fresh_seed()))), robot_xy=[0.0, 0.0],
                       yaw=0.3, hazards=np.full((8, 2), -1.4), goal=[1.2, 1.2])
    moved = []
    for a0 in [0.05, 0.3, 1.0, -0.05, -1.0, 0.02]:
        nxt = step(base, jnp.array([a0, 0.0]))
        moved.append(np.asarray(nxt.pipeline_state.data.qpos[:2]))
    np.testing.assert_allclose(moved[0], moved[1], atol=1e-6)
    np.testing.assert_allclose(moved[0], moved[2], atol=1e-6)
    np.testing.assert_allclose(moved[3], moved[4], atol=1e-6)
    assert np.linalg.norm(moved[0]) > 1e-4
    # The push is along the heading, and a smaller command pushes less.
    heading = moved[0] / np.linalg.norm(moved[0])
    np.testing.assert_allclose(heading, [math.cos(0.3), math.sin(0.3)], atol=1e-4)
    assert np.linalg.norm(moved[5]) == pytest.approx(0.4 * np.linalg.norm(moved[0]), rel=1e-2)


def test_point_dynamics_and_sensors_match_mujoco():
    """Our Point on MJX against the same MJCF on MuJoCo (C) with MuJoCo's own sensors, one env
    step (10 sub-steps) at a time from the same state under a random action.

    Each step starts MuJoCo from MJX's state: over a whole rollout the float32 (MJX) and float64
    (MuJoCo) trajectories part, because the yaw servo (kv = 1, explicit in Euler) is unstable
    at 2 ms and rings inside its force clamp on MuJoCo too, so the yaw rate is chaotic (measured
    over 30 fresh 15-step rollouts: the positions parted by more than 5 mm in 5). From the same
    state, over 600 steps: positions within 2.4e-6, planar velocities 2.8e-5, the yaw rate and
    the gyro 1.5e-3, the velocimeter 2.8e-5, the magnetometer 1.2e-6, the forward acceleration
    0.12 (ours is one sub-step behind MuJoCo's)."""
    config = NavConfig(num_hazards=0, num_vases=0, extents=(-1.0, -1.0, 1.0, 1.0))
    env = SafetyNavigation(config)
    sensors = ('<sensor><accelerometer site="robot"/><velocimeter site="robot"/>'
               '<gyro site="robot"/><magnetometer site="robot"/></sensor>')
    xml = build_mjcf(config).replace("</mujoco>", sensors + "</mujoco>")
    model = mujoco.MjModel.from_xml_string(xml)
    model.opt.magnetic = [0.0, -0.5, 0.0]
    data = mujoco.MjData(model)
    state = jax.jit(env.reset)(jax.random.PRNGKey(fresh_seed()))
    step = jax.jit(env.step)
    actions = fresh_rng().uniform(-1, 1, size=(15, 2))
    start_xy = np.asarray(state.pipeline_state.data.qpos[:2])
    for action in actions:
        ours = state.pipeline_state.data
        data.qpos[:], data.qvel[:] = np.asarray(ours.qpos), np.asarray(ours.qvel)
        data.qacc_warmstart[:] = np.asarray(ours.qacc_warmstart)
        data.time = float(ours.time)
        state = step(state, jnp.asarray(action, jnp.float32))
        data.ctrl[:] = action
        for _ in range(10):
            mujoco.mj_step(model, data)
        mujoco.mj_forward(model, data)
        ours, obs = state.pipeline_state.data, np.asarray(state.obs)
        np.testing.assert_allclose(np.asarray(ours.qpos), data.qpos, atol=2e-5)
        np.testing.assert_allclose(np.asarray(ours.qvel[:2]), data.qvel[:2], atol=2e-4)
        np.testing.assert_allclose(float(ours.qvel[2]), data.qvel[2], atol=1e-2)  # yaw rate
        np.testing.assert_allclose(obs[3:5], data.sensordata[3:5], atol=2e-4)  # velocimeter
        np.testing.assert_allclose(obs[6:9], data.sensordata[6:9], atol=1e-2)  # gyro
        np.testing.assert_allclose(obs[9:12], data.sensordata[9:12], atol=1e-5)  # magnetometer
        np.testing.assert_allclose(obs[2], 9.81, atol=1e-4)
        np.testing.assert_allclose(obs[0], data.sensordata[0], atol=0.3)  # forward acceleration
        # The lateral acceleration follows the ringing yaw rate: against our own qacc.
        yaw = float(ours.qpos[2])
        lateral = -math.sin(yaw) * ours.qacc[0] + math.cos(yaw) * ours.qacc[1]
        np.testing.assert_allclose(obs[1], lateral, atol=1e-4)
        np.testing.assert_allclose(obs[6:8], 0.0, atol=1e-6)
        assert abs(obs[8]) <= 0.3 * 0.05 / 0.005 + 0.5
    # Random pushes over 15 steps move the robot.
    assert np.linalg.norm(np.asarray(state.pipeline_state.data.qpos[:2]) - start_xy) > 1e-3


def test_truncation_and_determinism(goal1):
    env, reset, step, _ = goal1
    assert envs.make("SafetyPointGoal1").episode_length == 1000
    assert env.episode_length == 5
    keys = jax.random.split(jax.random.PRNGKey(fresh_seed()), 4)
    vreset, vstep = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))
    a = jax.random.uniform(jax.random.PRNGKey(fresh_seed()), (4, 2), minval=-1, maxval=1)
    state = vreset(keys)
    np.testing.assert_array_equal(np.asarray(vreset(keys).obs), np.asarray(state.obs))
    single = reset(keys[2])
    np.testing.assert_allclose(np.asarray(single.obs), np.asarray(state.obs[2]), atol=1e-6)
    assert not np.allclose(np.asarray(state.obs[0]), np.asarray(state.obs[1]))
    first = vstep(state, a)
    np.testing.assert_array_equal(np.asarray(vstep(state, a).obs), np.asarray(first.obs))
    done = []
    for _ in range(5):
        state = vstep(state, a)
        done.append(np.asarray(state.done))
    np.testing.assert_array_equal(np.asarray(done)[:4], 0.0)
    np.testing.assert_array_equal(done[4], 1.0)
    np.testing.assert_array_equal(np.asarray(state.info["truncation"]), 1.0)


def test_bad_overrides_raise():
    with pytest.raises(ValueError, match="unknown override"):
        envs.make("SafetyPointGoal1", num_pillars=3)
    with pytest.raises(ValueError, match="extents"):
        envs.make("SafetyPointGoal1", extents=(1.0, 1.0, -1.0, -1.0))
    env = envs.make("SafetyPointGoal1", num_hazards=3, extents=(-2, -2, 2, 2))
    assert env.env.config.num_hazards == 3


# -------------------------------------------------------------------------------- gremlins
@pytest.fixture(scope="module")
def gremlin_env():
    """A button task with one gremlin and one vase (so the gremlin's dofs follow the vase's)."""
    config = NavConfig(task="button", num_buttons=1, num_hazards=0, num_vases=1,
                       num_gremlins=1)
    env = SafetyNavigation(config)
    return env, jax.jit(env.reset), jax.jit(env.step)


def place_gremlin(env, state, centre, robot_xy):
    """Robot at `robot_xy` (yaw 0); the gremlin's circle centred at `centre`, its box and target
    where they are at t = 0 (centre + (0, 0.35)), unrotated; button and vase out of the way."""
    s = state.pipeline_state
    start = np.asarray(centre, np.float32) + [0.0, 0.35]
    box = jnp.asarray([*start, 0.2, 1.0, 0.0, 0.0, 0.0], jnp.float32)
    qpos = s.data.qpos.at[:3].set(jnp.asarray([*robot_xy, 0.0], jnp.float32))
    qpos = qpos.at[env._vase_qpos[0, :2]].set(jnp.array([1.3, -1.3]))
    qpos = qpos.at[env._gremlin_qpos[0]].set(box)
    mocap_pos = s.data.mocap_pos.at[0, :2].set(jnp.array([1.3, 1.3])).at[1].set(box[:3])
    mocap_quat = s.data.mocap_quat.at[1].set(box[3:])
    data = s.data.replace(qpos=qpos, qvel=jnp.zeros_like(s.data.qvel), mocap_pos=mocap_pos,
                          mocap_quat=mocap_quat, time=jnp.zeros(()))
    s = s.replace(data=data, gremlins_xy=jnp.asarray([centre], jnp.float32),
                  buttons_xy=jnp.array([[1.3, 1.3]]), goal_xy=jnp.array([1.3, 1.3]))
    return state.replace(pipeline_state=s)


def test_gremlin_box_follows_its_moving_target(gremlin_env):
    env, reset, step = gremlin_env
    m = env.mj_model
    assert m.nmocap == 2 and m.neq == 1 and m.eq_type[0] == mujoco.mjtEq.mjEQ_WELD
    assert m.nq == 3 + 7 + 7 and env._gremlin_qpos[0, 0] == 10
    state = place_gremlin(env, reset(jax.random.PRNGKey(fresh_seed())), [-0.3, -0.2],
                          [-1.2, 1.2])
    for _ in range(50):
        state = step(state, jnp.zeros(2))
    s = state.pipeline_state
    t = float(s.data.time)
    assert t == pytest.approx(1.0, abs=1e-3)
    target = np.array([-0.3, -0.2]) + 0.35 * np.array([math.sin(t), math.cos(t)])
    box = np.asarray(s.data.qpos[env._gremlin_qpos[0]])
    # It has travelled with the target (0.34 from its start), lagging a few centimetres.
    assert np.linalg.norm(box[:2] - [-0.3, 0.15]) > 0.25
    assert np.linalg.norm(box[:2] - target) < 0.05
    assert box[2] == pytest.approx(0.2, abs=5e-3)
    # The lidar sees the box where it is; the vase has stayed put.
    np.testing.assert_allclose(np.asarray(env._positions(s)["gremlin"][0]), box[:2])
    np.testing.assert_allclose(np.asarray(s.data.qpos[env._vase_qpos[0, :2]]), [1.3, -1.3],
                               atol=1e-4)
    assert float(state.info["cost"]) == 0.0


def test_gremlin_contact_costs(gremlin_env):
    env, reset, step = gremlin_env
    base = reset(jax.random.PRNGKey(fresh_seed()))
    # The box starts at (0, 0.35) and moves along +x, into the Point just beside it.
    state = place_gremlin(env, base, [0.0, 0.0], [0.19, 0.35])
    costs = []
    for _ in range(5):
        state = step(state, jnp.zeros(2))
        costs.append(float(state.info["cost"]))
    # The box pushes the light Point along rather than knocking it away: contact lasts.
    assert costs == [1.0] * 5
    assert bool(env._contacts(state.pipeline_state.data, "gremlin", 1)[0])
    far = step(place_gremlin(env, base, [0.0, 0.0], [0.6, -0.6]), jnp.zeros(2))
    assert float(far.info["cost"]) == 0.0


# ------------------------------------------------------------------------- solver options
def test_cg_solver_with_sparse_jacobian_needs_no_lapack_and_follows_newton():
    """solver="cg", jacobian="sparse" (BENCHMARKS.md: no batched-Cholesky limit on a CPU): the
    lowered step calls no LAPACK routine where MuJoCo's default Newton step does, and from the
    same states under the same random actions it follows Newton's trajectories to within
    millimetres, contacts with the vase, the gremlin and the button included. The default Newton
    settings follow a converged solve (50 iterations) exactly in most envs.

    Contacts amplify rounding differences in a few envs of each batch, so the bounds are on
    envs, not on pooled coordinates (whose upper percentiles land inside those few envs). Over
    1,008 random layouts (8 and 32 envs a batch): Newton's default left a converged solve by
    more than 1e-6 in 6% of the envs (at most 1.7 cm); CG's largest robot-position gap to
    Newton's per env was 3e-5 in the median env, 1.6e-4 at the 90th percentile and 7 mm at
    most; CG's cost differed on 0.5% of the env steps (at most 6 steps of one env). At 32 envs
    these bounds fail about once in 2,000 runs."""
    options = dict(task="button", num_buttons=1, num_hazards=2, num_vases=1, num_gremlins=1,
                   extents=(-0.8, -0.8, 0.8, 0.8))
    newton = SafetyNavigation(NavConfig(**options))
    cg = SafetyNavigation(NavConfig(**options, solver="cg", jacobian="sparse"))
    assert (cg.mj_model.opt.solver, cg.mj_model.opt.jacobian) == (
        mujoco.mjtSolver.mjSOL_CG, mujoco.mjtJacobian.mjJAC_SPARSE)
    seed = fresh_seed()
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    num_envs, steps = 32, 20
    actions = jax.random.uniform(keys[1], (steps, num_envs, 2), minval=-1, maxval=1)
    converged = SafetyNavigation(NavConfig(**options, solver_iterations=50,
                                           solver_ls_iterations=50))
    qpos, costs = {}, {}
    for name, env in (("newton", newton), ("cg", cg), ("converged", converged)):
        # The same layouts for both: the draws do not depend on the solver.
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(keys[0], num_envs))
        lowered = jax.jit(jax.vmap(env.step)).lower(state, actions[0])
        assert ("lapack" in lowered.as_text().lower()) == (name != "cg")
        step = lowered.compile()
        qpos[name], costs[name] = [], []
        for action in actions:
            state = step(state, action)
            qpos[name].append(np.asarray(state.pipeline_state.data.qpos))
            costs[name].append(np.asarray(state.info["cost"]))
    qpos_newton, qpos_cg = np.stack(qpos["newton"]), np.stack(qpos["cg"])  # (step, env, qpos)
    # The Point's default Newton settings (8 iterations, 2 line-search) are a converged solve.
    unconverged = np.abs(qpos_newton - np.stack(qpos["converged"]))
    assert np.median(unconverged) < 1e-7
    assert (unconverged.max(axis=(0, 2)) < 1e-6).mean() >= 0.75, unconverged.max(axis=(0, 2))
    assert np.isfinite(qpos_cg).all()
    assert np.abs(qpos_newton[-1] - qpos_newton[0])[:, :2].max() > 0.01  # the robots moved
    # CG (16 iterations) against Newton; one CG iteration (unconverged) gives a median of 2e-5
    # and gaps of 0.3 at the vase and the gremlin.
    error = np.abs(qpos_cg - qpos_newton)
    assert np.median(error) < 5e-6
    robot_gap = error[..., :2].max(axis=(0, 2))  # per env: the robot's x, y
    assert np.median(robot_gap) < 5e-4 and np.percentile(robot_gap, 90) < 5e-3, robot_gap
    # all coordinates, the vase's and the gremlin's free joints too (measured: per env 2e-3
    # in the median, 8e-3 at the 90th percentile, 2.4e-2 at the 99th)
    env_gap = error.max(axis=(0, 2))
    assert np.median(env_gap) < 1e-2 and np.percentile(env_gap, 90) < 5e-2, env_gap
    assert (np.stack(costs["cg"]) == np.stack(costs["newton"])).mean() >= 0.97


def test_solver_and_jacobian_overrides_are_checked():
    with pytest.raises(ValueError, match=r"solver must be one of \['cg', 'newton'\], got 'pgs'"):
        envs.make("SafetyPointGoal1", solver="pgs")
    with pytest.raises(ValueError, match=r"jacobian must be one of .*'sparse'.*got 'csr'"):
        envs.make("SafetyPointGoal1", jacobian="csr")


def test_car_default_solver_settings_follow_a_converged_solve():
    """The Car's wheel contacts need 10 Newton iterations (RobotSpec.newton_iterations): its
    default steps follow a converged solve (50, 50) where 4 iterations drift by centimetres."""
    options = dict(robot="Car", num_hazards=2, num_vases=0)
    seed = fresh_seed()
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    num_envs, steps = 8, 20
    actions = jax.random.uniform(keys[1], (steps, num_envs, 2), minval=-1, maxval=1)
    xy = {}
    for name, extra in (("default", {}), ("converged", dict(solver_iterations=50,
                                                            solver_ls_iterations=50))):
        env = SafetyNavigation(NavConfig(**options, **extra))
        assert env.mj_model.opt.iterations == (10 if name == "default" else 50)

        def body(state, action, env=env):
            state = jax.vmap(env.step)(state, action)
            return state, state.pipeline_state.data.qpos[:, :2]
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(keys[0], num_envs))
        xy[name] = np.asarray(jax.jit(lambda s, body=body: jax.lax.scan(body, s, actions)[1])(
            state))
    assert np.abs(xy["converged"][-1] - xy["converged"][0]).max() > 0.01  # the cars moved
    error = np.linalg.norm(xy["default"] - xy["converged"], axis=-1)
    assert np.median(error) < 1e-4 and np.percentile(error, 90) < 1e-2
