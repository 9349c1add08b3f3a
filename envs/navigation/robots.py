"""The Point and Car robots: our MJCF for them and their sensor readings, computed from MJX data.

Physical parameters follow Safety-Gymnasium 1.0 (docs/environments.md §7). Collision bits:
the floor has contype 1; robot geoms that touch the floor (the Car's wheels and rear ball) have
conaffinity 1; every robot geom has contype 2, so it collides with obstacles (conaffinity 2).
The Point's sphere rests on the floor without any effect on its planar motion (its joints have
no vertical freedom; checked on MuJoCo: identical trajectories with and without the floor
contact), so it has no floor contact here.

Sensors (all in the body frame, at the body origin, as MuJoCo's accelerometer, velocimeter,
gyro and magnetometer sites): the accelerometer is the origin's linear acceleration minus
gravity. The acceleration is MJX's `qacc` from the start of the last physics sub-step (2 ms for
the Point, 4 ms for the Car, before the end of the control step); the original recomputes it at
the end of the step, so the two differ by that sub-step's change of acceleration.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

GRAVITY = 9.81
MAGNETIC_FIELD = (0.0, -0.5, 0.0)

POINT_BODY = """
    <body name="robot" pos="0 0 0.1">
      <joint name="robot_x" type="slide" axis="1 0 0" damping="0.01"/>
      <joint name="robot_y" type="slide" axis="0 1 0" damping="0.01"/>
      <joint name="robot_yaw" type="hinge" axis="0 0 1" damping="0.005"/>
      <geom name="robot_ball" type="sphere" size="0.1" density="1" friction="1 0.01 0.01"
            condim="6" contype="2" conaffinity="0"/>
      <geom name="robot_nose" type="box" pos="0.1 0 0" size="0.05 0.05 0.05" density="1"
            condim="6" contype="2" conaffinity="0"/>
      <site name="robot" size="0.032"/>
    </body>
"""

POINT_ACTUATORS = """
    <motor name="forward" site="robot" gear="0.3 0 0 0 0 0" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.05 0.05"/>
    <velocity name="turn" joint="robot_yaw" gear="0.3" kv="1" ctrllimited="true"
              ctrlrange="-1 1" forcelimited="true" forcerange="-0.05 0.05"/>
"""

CAR_BODY = """
    <body name="robot" pos="0 0 0.1">
      <freejoint name="robot"/>
      <site name="robot" size="0.032"/>
      <geom name="robot_chassis" type="box" size="0.1 0.1 0.05" density="5" condim="6"
            contype="2" conaffinity="0"/>
      <geom name="robot_back_bumper" type="box" pos="0 0.15 0" size="0.1 0.01 0.05" density="5"
            condim="6" contype="2" conaffinity="0"/>
      <geom name="robot_back_connector" type="box" pos="0 0.125 0" size="0.01 0.025 0.03"
            density="5" condim="6" contype="2" conaffinity="0"/>
      <geom name="robot_front_bumper" type="box" pos="0 -0.165 0" size="0.05 0.01 0.05"
            density="5" condim="6" contype="2" conaffinity="0"/>
      <geom name="robot_front_connector" type="box" pos="0 -0.13 0.04" size="0.05 0.03 0.01"
            density="5" condim="6" contype="2" conaffinity="0"/>
      <body name="robot_left" pos="-0.1 0.1 -0.05">
        <joint name="robot_left" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="robot_left" type="cylinder" fromto="-0.055 0 0 -0.005 0 0" size="0.05"
              density="5" condim="6" contype="0" conaffinity="1"/>
      </body>
      <body name="robot_right" pos="0.1 0.1 -0.05">
        <joint name="robot_right" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="robot_right" type="cylinder" fromto="0.005 0 0 0.055 0 0" size="0.05"
              density="5" condim="6" contype="0" conaffinity="1"/>
      </body>
      <body name="robot_rear" pos="0 -0.1 -0.05">
        <joint name="robot_rear" type="ball" damping="0.001"/>
        <geom name="robot_rear" type="sphere" size="0.05" density="5" condim="6"
              contype="0" conaffinity="1"/>
      </body>
    </body>
"""

CAR_ACTUATORS = """
    <motor name="left" joint="robot_left" gear="1" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.02 0.02"/>
    <motor name="right" joint="robot_right" gear="1" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.02 0.02"/>
"""


def quat_to_mat(quat: jax.Array) -> jax.Array:
    """Rotation matrix (3, 3) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    return jnp.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def yaw_to_mat(yaw: jax.Array) -> jax.Array:
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    zero, one = jnp.zeros_like(yaw), jnp.ones_like(yaw)
    return jnp.array([[c, -s, zero], [s, c, zero], [zero, zero, one]])


@dataclass(frozen=True)
class RobotSpec:
    """What a task needs to know about a robot.

    nq, nv: the robot's leading entries of qpos and qvel; num_sensors: its sensor floats.
    newton_iterations: (iterations, line-search iterations) of MuJoCo's Newton solver with
    which our steps match a converged solve (50, 50) step for step; the originals run MuJoCo's
    defaults (100, 50). MJX runs every line-search iteration under vmap, so fewer is faster;
    solver iterations stop once every env of the batch has converged, so 8 cost no more than 4
    on the Point's scenes, where 4 left a few contacts with gremlins unconverged.
    """

    name: str
    body_xml: str
    actuator_xml: str
    timestep: float
    nq: int
    nv: int
    num_sensors: int
    height: float = 0.1
    newton_iterations: tuple[int, int] = (8, 2)

    def initial_qpos(self, xy: jax.Array, yaw: jax.Array) -> jax.Array:
        if self.name == "Point":
            return jnp.array([xy[0], xy[1], yaw])
        half = 0.5 * yaw
        base = jnp.array([xy[0], xy[1], self.height, jnp.cos(half), 0.0, 0.0, jnp.sin(half)])
        return jnp.concatenate([base, jnp.zeros(2), jnp.array([1.0, 0.0, 0.0, 0.0])])

    def pose(self, qpos: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The robot body's world position (3,) and rotation matrix (3, 3)."""
        if self.name == "Point":
            return jnp.array([qpos[0], qpos[1], self.height]), yaw_to_mat(qpos[2])
        return qpos[0:3], quat_to_mat(qpos[3:7])

    def sensors(self, qpos: jax.Array, qvel: jax.Array, qacc: jax.Array) -> jax.Array:
        """Sensor block of the observation: accelerometer, velocimeter, gyro, magnetometer
        (3 each) and, for the Car, the rear ball's angular velocity (3) and orientation (9)."""
        _, mat = self.pose(qpos)
        field = jnp.asarray(MAGNETIC_FIELD)
        if self.name == "Point":
            lin_vel = jnp.array([qvel[0], qvel[1], 0.0])
            lin_acc = jnp.array([qacc[0], qacc[1], 0.0])
            gyro = jnp.array([0.0, 0.0, qvel[2]])
        else:
            lin_vel, lin_acc, gyro = qvel[0:3], qacc[0:3], qvel[3:6]
        accelerometer = (lin_acc + jnp.array([0.0, 0.0, GRAVITY])) @ mat
        parts = [accelerometer, lin_vel @ mat, gyro, field @ mat]
        if self.name == "Car":
            parts += [qvel[8:11], quat_to_mat(qpos[9:13]).reshape(-1)]
        return jnp.concatenate(parts)


POINT = RobotSpec("Point", POINT_BODY, POINT_ACTUATORS, timestep=0.002, nq=3, nv=3,
                  num_sensors=12)
# The Car's wheel contacts need more line search: with (4, 8) its position drifted 1 cm from the
# converged one within 10 steps and its random-action return was 2 standard errors off
# (BENCHMARKS.md); (8, 2) still drifts, (10, 4) does not.
CAR = RobotSpec("Car", CAR_BODY, CAR_ACTUATORS, timestep=0.004, nq=13, nv=11, num_sensors=24,
                newton_iterations=(10, 4))
ROBOTS = {"Point": POINT, "Car": CAR}
