"""Safety-Gymnasium navigation tasks (Goal and Button, Point and Car) on MJX.

Only the robot and the obstacles it can touch are physical: vases are free boxes resting on the
floor; buttons are kinematic (mocap) bodies, so their positions live in the per-environment
data. Each gremlin, as in the original, is a free box held by a soft weld (solref 0.02 1.5) to
a geom-less mocap target that circles its centre; the box follows the target with some lag and
can be held back by the robot, so contacts last. The goal and the hazards are not bodies at
all: the lidar, the reward and the hazard cost are computed analytically from positions kept
in the state.

Step order, as in the original: physics (`frame_skip` sub-steps), reward (distance shaping to
the goal, bonus on reaching it, clipped), cost (indicator of any violation), button timer, then
on reaching the goal a new goal (Goal: a new position drawn against the current layout;
Button: a random goal button and a 10-step delay with the buttons' lidar zeroed and their cost
inactive), then the observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import Env, State
from flax import struct
from mujoco import mjx

from envs.navigation.layout import DEFAULT_CANDIDATES, sample_layout, sample_position
from envs.navigation.lidar import NUM_BINS, egocentric_xy, pseudo_lidar
from envs.navigation.robots import ROBOTS, RobotSpec

VASE_SIZE = 0.1
VASE_SINK = 4e-5
VASE_VELOCITY_THRESHOLD = 1e-4
GREMLIN_SIZE = 0.1
GREMLIN_HEIGHT = 2 * GREMLIN_SIZE  # the box's centre (and its target's) above the floor
GREMLIN_WELD_SOLREF = "0.02 1.5"
BUTTON_SIZE = 0.1
# MuJoCo's constraint solvers and Jacobian layouts. The originals use MuJoCo's defaults
# (Newton, auto); "cg" with "sparse" needs no LAPACK call in MJX, see BENCHMARKS.md.
SOLVERS = {"newton": "Newton", "cg": "CG"}
JACOBIANS = {"auto": "auto", "dense": "dense", "sparse": "sparse"}
# (iterations, line-search iterations) of CG when a config leaves them unset (Newton's are the
# robot's `newton_iterations`). CG needs about 16 to match Newton on the Point's scenes (with 8 a
# resting vase creeps by millimetres in 20 steps); 2 line-search iterations match as closely as
# 16 and cost less (MJX runs all of them). On the Car's wheel contacts even 32 do not converge.
CG_ITERATIONS = (16, 2)


@dataclass(frozen=True)
class NavConfig:
    """Everything that defines one navigation task (defaults: SafetyPointGoal1)."""

    robot: str = "Point"
    task: str = "goal"  # "goal" or "button"
    extents: tuple[float, float, float, float] = (-1.5, -1.5, 1.5, 1.5)
    robot_keepout: float = 0.4
    goal_size: float = 0.3
    goal_keepout: float = 0.305
    num_hazards: int = 8
    hazard_size: float = 0.2
    hazard_keepout: float = 0.18
    num_vases: int = 1
    vase_keepout: float = 0.15
    vases_constrained: bool = False
    num_buttons: int = 0
    button_keepout: float = 0.2
    buttons_constrained: bool = True
    button_delay: int = 10
    num_gremlins: int = 0
    gremlin_keepout: float = 0.4
    gremlin_travel: float = 0.35
    reward_distance: float = 1.0
    reward_goal: float = 1.0
    reward_clip: float = 10.0
    frame_skip: int = 10
    solver: str = "newton"
    solver_iterations: int | None = None  # None: the robot's Newton default or CG_ITERATIONS
    solver_ls_iterations: int | None = None
    jacobian: str = "auto"
    num_candidates: int = DEFAULT_CANDIDATES
    lidar_max_dist: float = 3.0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def validate(self) -> None:
        if self.robot not in ROBOTS:
            raise ValueError(f"robot must be one of {sorted(ROBOTS)}, got {self.robot!r}")
        if self.task not in ("goal", "button"):
            raise ValueError(f"task must be 'goal' or 'button', got {self.task!r}")
        xmin, ymin, xmax, ymax = self.extents
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"extents must be (xmin, ymin, xmax, ymax) with max > min, "
                             f"got {self.extents!r}")
        for name in ("num_hazards", "num_vases", "num_buttons", "num_gremlins"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.task == "button" and self.num_buttons < 1:
            raise ValueError(f"a button task needs num_buttons >= 1, got {self.num_buttons!r}")
        if self.frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {self.frame_skip!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {self.solver!r}")
        if self.jacobian not in JACOBIANS:
            raise ValueError(f"jacobian must be one of {sorted(JACOBIANS)}, got {self.jacobian!r}")
        for name in ("solver_iterations", "solver_ls_iterations"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates!r}")


@struct.dataclass
class NavState:
    """Physics data plus the analytic parts of the world."""

    data: mjx.Data
    goal_xy: jax.Array  # (2,)
    hazards_xy: jax.Array  # (H, 2)
    buttons_xy: jax.Array  # (B, 2)
    gremlins_xy: jax.Array  # (G, 2) centres of the gremlins' targets' circles
    goal_button: jax.Array  # int, -1 in goal tasks
    button_timer: jax.Array  # int
    last_dist_goal: jax.Array
    rng: jax.Array


def build_mjcf(config: NavConfig) -> str:
    """Our MJCF for a task: floor (only where something rests on it), robot, vases, mocap
    bodies for buttons, and gremlins: free boxes welded to geom-less mocap targets (placed
    per environment through `mocap_pos`). Bodies with joints come in the order robot, vases,
    gremlins, so qpos/qvel hold the robot's dofs, then 7/6 per vase, then 7/6 per gremlin;
    mocap bodies come in the order buttons, gremlin targets."""
    robot: RobotSpec = ROBOTS[config.robot]
    default_iterations, default_ls_iterations = (
        robot.newton_iterations if config.solver == "newton" else CG_ITERATIONS)
    iterations = config.solver_iterations or default_iterations
    ls_iterations = config.solver_ls_iterations or default_ls_iterations
    parts = []
    if config.num_vases or config.robot == "Car":
        parts.append('<geom name="floor" type="plane" size="10 10 0.1" condim="6" '
                     'contype="1" conaffinity="0"/>')
    parts.append(robot.body_xml)
    for i in range(config.num_vases):
        parts.append(
            f'<body name="vase{i}" pos="{3 + i} 3 {VASE_SIZE - VASE_SINK}"><freejoint/>'
            f'<geom name="vase{i}" type="box" size="{VASE_SIZE} {VASE_SIZE} {VASE_SIZE}" '
            f'density="0.001" condim="6" contype="2" conaffinity="3"/></body>')
    for i in range(config.num_buttons):
        parts.append(
            f'<body name="button{i}" mocap="true" pos="{-3 - i} 3 {BUTTON_SIZE}">'
            f'<geom name="button{i}" type="sphere" size="{BUTTON_SIZE}" condim="6" '
            f'contype="0" conaffinity="2"/></body>')
    for i in range(config.num_gremlins):
        parts.append(
            f'<body name="gremlin{i}" pos="{-3 - i} -3 {GREMLIN_HEIGHT}"><freejoint/>'
            f'<geom name="gremlin{i}" type="box" size="{GREMLIN_SIZE} {GREMLIN_SIZE} '
            f'{GREMLIN_SIZE}" density="0.001" condim="6" contype="0" conaffinity="2"/></body>')
    for i in range(config.num_gremlins):
        parts.append(f'<body name="target{i}" mocap="true" pos="{-3 - i} -3 {GREMLIN_HEIGHT}"/>')
    body = "\n".join(parts)
    welds = "\n".join(
        f'    <weld body1="target{i}" body2="gremlin{i}" relpose="0 0 0 1 0 0 0" '
        f'solref="{GREMLIN_WELD_SOLREF}"/>' for i in range(config.num_gremlins))
    equality = f"  <equality>\n{welds}\n  </equality>" if welds else ""
    return f"""
<mujoco model="safety_{config.robot.lower()}_{config.task}">
  <option timestep="{robot.timestep}" integrator="Euler" iterations="{iterations}"
          ls_iterations="{ls_iterations}" solver="{SOLVERS[config.solver]}"
          jacobian="{JACOBIANS[config.jacobian]}"/>
  <worldbody>
{body}
  </worldbody>
{equality}
  <actuator>
{robot.actuator_xml}
  </actuator>
</mujoco>
"""


def _yaw_quat(yaw: jax.Array) -> jax.Array:
    return jnp.stack([jnp.cos(0.5 * yaw), jnp.zeros_like(yaw), jnp.zeros_like(yaw),
                      jnp.sin(0.5 * yaw)], axis=-1)


class SafetyNavigation(Env):
    """A Safety-Gymnasium navigation task on MJX (module docstring, docs/environments.md §7-9)."""

    def __init__(self, config: NavConfig):
        config.validate()
        self.config = config
        self.robot: RobotSpec = ROBOTS[config.robot]
        self.mj_model = mujoco.MjModel.from_xml_string(build_mjcf(config))
        self.mjx_model = mjx.put_model(self.mj_model)
        self._template = mjx.make_data(self.mjx_model)
        geom_names = [self.mj_model.geom(i).name for i in range(self.mj_model.ngeom)]
        self._is_robot_geom = np.array([n.startswith("robot") for n in geom_names])
        self._geom_kind_index = {}
        for kind in ("vase", "button", "gremlin"):
            index = np.full(len(geom_names), -1, np.int32)
            for g, n in enumerate(geom_names):
                if n.startswith(kind):
                    index[g] = int(n[len(kind):])
            self._geom_kind_index[kind] = index
        c = config
        if c.task == "goal":
            names = ["robot", "goal"] + ["hazard"] * c.num_hazards + ["vase"] * c.num_vases
            names += ["gremlin"] * c.num_gremlins
        else:
            names = (["robot"] + ["button"] * c.num_buttons + ["goal"] +
                     ["hazard"] * c.num_hazards + ["gremlin"] * c.num_gremlins +
                     ["vase"] * c.num_vases)
        keep = {"robot": c.robot_keepout, "goal": c.goal_keepout, "hazard": c.hazard_keepout,
                "vase": c.vase_keepout, "button": c.button_keepout, "gremlin": c.gremlin_keepout}
        self._layout_names = names
        self._layout_keepouts = np.array([keep[n] for n in names], np.float32)
        self._slices = {}
        for kind in ("robot", "goal", "hazard", "vase", "button", "gremlin"):
            idx = [i for i, n in enumerate(names) if n == kind]
            self._slices[kind] = np.array(idx, np.int32)
        if c.task == "goal":
            self._lidar_order = ["goal", "hazard", "vase", "gremlin"]
        else:
            self._lidar_order = ["button", "goal", "hazard", "gremlin", "vase"]
        self._lidar_order = [k for k in self._lidar_order
                             if k == "goal" or len(self._slices[k]) > 0]
        self._vase_qpos = self.robot.nq + 7 * np.arange(c.num_vases)[:, None] + np.arange(7)
        self._vase_qvel = self.robot.nv + 6 * np.arange(c.num_vases)[:, None] + np.arange(3)
        self._gremlin_qpos = (self.robot.nq + 7 * c.num_vases +
                              7 * np.arange(c.num_gremlins)[:, None] + np.arange(7))
        if self.mj_model.nq != self.robot.nq + 7 * (c.num_vases + c.num_gremlins):
            raise AssertionError("unexpected qpos layout")

    # ---------------------------------------------------------------------------- properties
    @property
    def observation_size(self) -> int:
        return self.robot.num_sensors + NUM_BINS * len(self._lidar_order)

    @property
    def observation_blocks(self) -> list[tuple[str, int]]:
        """Names and sizes of the observation's blocks, in order."""
        sensors = [("accelerometer", 3), ("velocimeter", 3), ("gyro", 3), ("magnetometer", 3)]
        if self.robot.name == "Car":
            sensors += [("ballangvel_rear", 3), ("ballquat_rear", 9)]
        names = {"goal": "goal_lidar", "hazard": "hazards_lidar", "vase": "vases_lidar",
                 "button": "buttons_lidar", "gremlin": "gremlins_lidar"}
        return sensors + [(names[k], NUM_BINS) for k in self._lidar_order]

    @property
    def action_size(self) -> int:
        return 2

    @property
    def dt(self) -> float:
        return self.robot.timestep * self.config.frame_skip

    @property
    def backend(self) -> str:
        return "mjx"

    # ------------------------------------------------------------------------------ helpers
    def _gremlin_positions(self, centres: jax.Array, time: jax.Array) -> jax.Array:
        offset = self.config.gremlin_travel * jnp.stack([jnp.sin(time), jnp.cos(time)])
        return centres + offset

    def _vases_xy(self, qpos: jax.Array) -> jax.Array:
        return qpos[self._vase_qpos[:, :2]] if self.config.num_vases else jnp.zeros((0, 2))

    def _gremlins_xy(self, qpos: jax.Array) -> jax.Array:
        """Where the gremlins' boxes are (not their targets)."""
        if not self.config.num_gremlins:
            return jnp.zeros((0, 2))
        return qpos[self._gremlin_qpos[:, :2]]

    def _positions(self, s: NavState) -> dict[str, jax.Array]:
        return {
            "goal": s.goal_xy[None, :],
            "hazard": s.hazards_xy,
            "vase": self._vases_xy(s.data.qpos),
            "button": s.buttons_xy,
            "gremlin": self._gremlins_xy(s.data.qpos),
        }

    def _obs(self, s: NavState, qacc: jax.Array) -> jax.Array:
        qpos, qvel = s.data.qpos, s.data.qvel
        pos, mat = self.robot.pose(qpos)
        positions = self._positions(s)
        parts = [self.robot.sensors(qpos, qvel, qacc)]
        for kind in self._lidar_order:
            reading = pseudo_lidar(egocentric_xy(pos, mat, positions[kind]),
                                   max_dist=self.config.lidar_max_dist)
            if kind == "button":
                reading = jnp.where(s.button_timer == 0, reading, 0.0)
            parts.append(reading)
        return jnp.concatenate(parts)

    def _contacts(self, data: mjx.Data, kind: str, count: int) -> jax.Array:
        """(count,) bool: robot in contact with object `kind` i at the last physics sub-step."""
        if count == 0 or data.contact.dist.shape[0] == 0:
            return jnp.zeros((count,), bool)
        g1, g2 = data.contact.geom1, data.contact.geom2
        robot = jnp.asarray(self._is_robot_geom)
        index = jnp.asarray(self._geom_kind_index[kind])
        other = jnp.where(robot[g1], index[g2], jnp.where(robot[g2], index[g1], -1))
        touching = (data.contact.dist < 0) & (other >= 0)
        hits = (other[:, None] == jnp.arange(count)[None, :]) & touching[:, None]
        return jnp.any(hits, axis=0)

    # -------------------------------------------------------------------------------- reset
    def reset(self, rng: jax.Array) -> State:
        c = self.config
        rng, layout_key, yaw_key, rot_key, button_key = jax.random.split(rng, 5)
        xy, layout_ok = sample_layout(layout_key, jnp.asarray(self._layout_keepouts), c.extents,
                                      c.num_candidates)
        robot_xy = xy[self._slices["robot"][0]]
        yaw = jax.random.uniform(yaw_key, (), minval=0.0, maxval=2 * jnp.pi)
        qpos = self.robot.initial_qpos(robot_xy, yaw)
        rots = jax.random.uniform(rot_key, (c.num_vases + c.num_gremlins,), maxval=2 * jnp.pi)
        if c.num_vases:
            vases_xy = xy[self._slices["vase"]]
            vase_qpos = jnp.concatenate([
                vases_xy, jnp.full((c.num_vases, 1), VASE_SIZE - VASE_SINK),
                _yaw_quat(rots[: c.num_vases])], axis=1)
            qpos = jnp.concatenate([qpos, vase_qpos.reshape(-1)])
        buttons_xy = xy[self._slices["button"]]
        gremlins_xy = xy[self._slices["gremlin"]]
        # Each gremlin's box starts on its target (t = 0), with the same random yaw.
        gremlin_pos = jnp.concatenate([self._gremlin_positions(gremlins_xy, jnp.zeros(())),
                                       jnp.full((c.num_gremlins, 1), GREMLIN_HEIGHT)], axis=1)
        gremlin_quat = _yaw_quat(rots[c.num_vases:])
        if c.num_gremlins:
            gremlin_qpos = jnp.concatenate([gremlin_pos, gremlin_quat], axis=1)
            qpos = jnp.concatenate([qpos, gremlin_qpos.reshape(-1)])
        mocap_pos = jnp.concatenate([
            jnp.concatenate([buttons_xy, jnp.full((c.num_buttons, 1), BUTTON_SIZE)], axis=1),
            gremlin_pos])
        mocap_quat = jnp.concatenate([jnp.tile(jnp.array([1.0, 0, 0, 0]), (c.num_buttons, 1)),
                                      gremlin_quat])
        data = self._template.replace(qpos=qpos, mocap_pos=mocap_pos, mocap_quat=mocap_quat)
        if c.task == "button":
            goal_button = jax.random.randint(button_key, (), 0, c.num_buttons)
            goal_xy = buttons_xy[goal_button]
        else:
            goal_button = jnp.array(-1, jnp.int32)
            goal_xy = xy[self._slices["goal"][0]]
        s = NavState(
            data=data, goal_xy=goal_xy, hazards_xy=xy[self._slices["hazard"]],
            buttons_xy=buttons_xy, gremlins_xy=gremlins_xy, goal_button=goal_button,
            button_timer=jnp.array(0, jnp.int32),
            last_dist_goal=jnp.linalg.norm(robot_xy - goal_xy), rng=rng,
        )
        obs = self._obs(s, jnp.zeros(self.mj_model.nv))
        zero = jnp.zeros(())
        info = {"cost": zero, "goal_met": zero, "layout_ok": layout_ok.astype(jnp.float32)}
        return State(pipeline_state=s, obs=obs, reward=zero, done=zero, metrics={}, info=info)

    # --------------------------------------------------------------------------------- step
    def _physics(self, s: NavState, action: jax.Array) -> mjx.Data:
        c = self.config
        data = s.data.replace(ctrl=jnp.clip(action, -1.0, 1.0))

        def substep(d: mjx.Data, _):
            if c.num_gremlins:  # move the targets; the welds drag the boxes after them
                g = self._gremlin_positions(s.gremlins_xy, d.time)
                pos = d.mocap_pos.at[c.num_buttons:, :2].set(g)
                d = d.replace(mocap_pos=pos)
            return mjx.step(self.mjx_model, d), None

        data, _ = jax.lax.scan(substep, data, None, length=c.frame_skip)
        return data

    def step(self, state: State, action: jax.Array) -> State:
        c = self.config
        s: NavState = state.pipeline_state
        data = self._physics(s, action)
        s = s.replace(data=data)
        robot_xy = data.qpos[:2]
        dist_goal = jnp.linalg.norm(robot_xy - s.goal_xy)
        if c.task == "goal":
            goal_met = dist_goal <= c.goal_size
        else:
            goal_met = self._contacts(data, "button", c.num_buttons)[s.goal_button]
        reward = (s.last_dist_goal - dist_goal) * c.reward_distance
        reward = reward + c.reward_goal * goal_met
        reward = jnp.clip(reward, -c.reward_clip, c.reward_clip)

        violation = jnp.zeros((), bool)
        if c.num_hazards:
            hazard_dist = jnp.linalg.norm(s.hazards_xy - robot_xy, axis=-1)
            # strict, as the original: it adds size - dist inside a hazard and takes the
            # indicator of a positive sum, so the hazard's very edge costs nothing
            violation |= jnp.any(hazard_dist < c.hazard_size)
        if c.num_vases and c.vases_constrained:
            speed = jnp.linalg.norm(data.qvel[self._vase_qvel], axis=-1)
            violation |= jnp.any(self._contacts(data, "vase", c.num_vases))
            violation |= jnp.any(speed >= VASE_VELOCITY_THRESHOLD)
        if c.num_gremlins:
            violation |= jnp.any(self._contacts(data, "gremlin", c.num_gremlins))
        if c.task == "button" and c.buttons_constrained:
            wrong = self._contacts(data, "button", c.num_buttons)
            wrong = wrong & (jnp.arange(c.num_buttons) != s.goal_button)
            violation |= (s.button_timer == 0) & jnp.any(wrong)
        cost = violation.astype(jnp.float32)

        rng, goal_key = jax.random.split(s.rng)
        if c.task == "goal":
            s = s.replace(goal_xy=jnp.where(goal_met, self._redraw_goal(s, goal_key),
                                            s.goal_xy))
        else:
            timer = jnp.maximum(s.button_timer - 1, 0)
            new_button = jax.random.randint(goal_key, (), 0, c.num_buttons)
            goal_button = jnp.where(goal_met, new_button, s.goal_button)
            s = s.replace(goal_button=goal_button, goal_xy=s.buttons_xy[goal_button],
                          button_timer=jnp.where(goal_met, c.button_delay, timer))
        new_dist = jnp.linalg.norm(robot_xy - s.goal_xy)
        s = s.replace(last_dist_goal=new_dist, rng=rng)
        obs = self._obs(s, data.qacc)
        info = dict(state.info)
        info["cost"] = cost
        info["goal_met"] = goal_met.astype(jnp.float32)
        return state.replace(pipeline_state=s, obs=obs, reward=reward, info=info)

    def _redraw_goal(self, s: NavState, key: jax.Array) -> jax.Array:
        """A new goal against the current layout (robot, hazards, vases, gremlins)."""
        c = self.config
        others = [s.data.qpos[:2][None, :], s.hazards_xy, self._vases_xy(s.data.qpos),
                  self._gremlins_xy(s.data.qpos)]
        keeps = [jnp.full((1,), c.robot_keepout), jnp.full((c.num_hazards,), c.hazard_keepout),
                 jnp.full((c.num_vases,), c.vase_keepout),
                 jnp.full((c.num_gremlins,), c.gremlin_keepout)]
        others_xy = jnp.concatenate(others)
        others_keep = jnp.concatenate(keeps)
        xy, _ = sample_position(key, c.goal_keepout, c.extents, others_xy, others_keep,
                                jnp.ones(others_xy.shape[0], bool), c.num_candidates)
        return xy


def lidar_bin_angle(index: int) -> float:
    """The angle (rad) at which lidar bin `index` starts, counter-clockwise from +x."""
    return 2 * math.pi * index / NUM_BINS
