"""Safety-Gymnasium navigation tasks on MJX, registered in `envs`.

    env = envs.make("SafetyPointGoal1")                      # 60 floats, 1000-step episodes
    env = envs.make("SafetyPointGoal1", episode_length=200, num_hazards=4)

Registered: SafetyPointGoal0/1/2, SafetyPointButton1/2, SafetyCarGoal1/2 (docs/environments.md
§7-§9: what each computes, what differs from Safety-Gymnasium, what was measured against it).
PointGoal0/1 are tested against hand computations and MuJoCo, and PointGoal1 and CarGoal1
agree with the original under random actions (BENCHMARKS.md); PointGoal2, the Button tasks
(contact costs of buttons and gremlins; gremlins are free boxes soft-welded to moving mocap
targets, as in the original) and CarGoal2 are built but not yet validated: their descriptions
say so. Every factory accepts the same overrides (None keeps the task's value).
"""

from __future__ import annotations

import dataclasses
import functools

from brax.envs.base import Env

from envs.navigation.layout import sample_layout, sample_position
from envs.navigation.lidar import egocentric_xy, pseudo_lidar
from envs.navigation.robots import CAR, POINT, ROBOTS, RobotSpec
from envs.navigation.task import NavConfig, NavState, SafetyNavigation, build_mjcf
from envs.registry import register
from envs.wrappers import TimeLimit

DEFAULT_EPISODE_LENGTH = 1000

_GOAL0 = dict(extents=(-1.0, -1.0, 1.0, 1.0), num_hazards=0, num_vases=0)
_GOAL1 = dict(extents=(-1.5, -1.5, 1.5, 1.5), num_hazards=8, num_vases=1)
_GOAL2 = dict(extents=(-2.0, -2.0, 2.0, 2.0), num_hazards=10, num_vases=10,
              vases_constrained=True)
_BUTTON1 = dict(task="button", extents=(-1.5, -1.5, 1.5, 1.5), num_buttons=4,
                goal_keepout=0.4, num_hazards=4, num_gremlins=4, num_vases=0)
_BUTTON2 = dict(_BUTTON1, extents=(-1.8, -1.8, 1.8, 1.8), num_hazards=8, num_gremlins=6)

TASKS: dict[str, NavConfig] = {
    "SafetyPointGoal0": NavConfig(robot="Point", **_GOAL0),
    "SafetyPointGoal1": NavConfig(robot="Point", **_GOAL1),
    "SafetyPointGoal2": NavConfig(robot="Point", **_GOAL2),
    "SafetyPointButton1": NavConfig(robot="Point", **_BUTTON1),
    "SafetyPointButton2": NavConfig(robot="Point", **_BUTTON2),
    "SafetyCarGoal1": NavConfig(robot="Car", **_GOAL1),
    "SafetyCarGoal2": NavConfig(robot="Car", **_GOAL2),
}

_EXPERIMENTAL = "[experimental: not yet validated against the original] "

_DESCRIPTIONS = {
    "SafetyPointGoal0": "Point robot reaches goals in [-1, 1]^2; no hazards (obs 28).",
    "SafetyPointGoal1": "Point robot reaches goals, 8 hazards, 1 vase; obs 60 (the paper's task).",
    "SafetyPointGoal2": _EXPERIMENTAL + "Point robot,"
    " 10 hazards, 10 costly vases in [-2, 2]^2; obs 60.",
    "SafetyPointButton1": _EXPERIMENTAL + "Point robot presses goal buttons;"
    " 4 hazards, 4 gremlins; obs 76.",
    "SafetyPointButton2": _EXPERIMENTAL + "Point robot presses goal buttons;"
    " 8 hazards, 6 gremlins; obs 76.",
    "SafetyCarGoal1": "Car (differential drive) reaches goals, 8 hazards, 1 vase; obs 72.",
    "SafetyCarGoal2": _EXPERIMENTAL + "Car, 10 hazards, 10 costly vases in [-2, 2]^2; obs 72.",
}


def make_navigation(
    name: str,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
    extents: tuple[float, float, float, float] | None = None,
    num_hazards: int | None = None,
    num_vases: int | None = None,
    num_buttons: int | None = None,
    num_gremlins: int | None = None,
    vases_constrained: bool | None = None,
    hazard_size: float | None = None,
    goal_size: float | None = None,
    frame_skip: int | None = None,
    solver_iterations: int | None = None,
    solver_ls_iterations: int | None = None,
    solver: str | None = None,
    jacobian: str | None = None,
    num_candidates: int | None = None,
) -> Env:
    """`TimeLimit(SafetyNavigation(config), episode_length)` for a registered task name."""
    if name not in TASKS:
        raise ValueError(f"unknown navigation task {name!r}; valid: {sorted(TASKS)}")
    overrides = {k: v for k, v in dict(
        extents=None if extents is None else tuple(float(e) for e in extents),
        num_hazards=num_hazards, num_vases=num_vases, num_buttons=num_buttons,
        num_gremlins=num_gremlins, vases_constrained=vases_constrained,
        hazard_size=hazard_size, goal_size=goal_size, frame_skip=frame_skip,
        solver_iterations=solver_iterations, solver_ls_iterations=solver_ls_iterations,
        solver=solver, jacobian=jacobian, num_candidates=num_candidates,
    ).items() if v is not None}
    if extents is not None and len(overrides["extents"]) != 4:
        raise ValueError(f"extents must be (xmin, ymin, xmax, ymax), got {extents!r}")
    config = dataclasses.replace(TASKS[name], **overrides)
    return TimeLimit(SafetyNavigation(config), episode_length)


for _name in TASKS:
    register(_name, functools.partial(make_navigation, _name), _DESCRIPTIONS[_name])

__all__ = ["CAR", "POINT", "ROBOTS", "TASKS", "NavConfig", "NavState", "RobotSpec",
           "SafetyNavigation", "build_mjcf", "egocentric_xy", "make_navigation",
           "pseudo_lidar", "sample_layout", "sample_position"]
