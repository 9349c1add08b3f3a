"""Safe environments with a Brax-compatible interface, and their registry.

    env = envs.make("TinyHazardNav")
    state = env.reset(key); state = env.step(state, action); cost = state.info["cost"]
"""

from envs.quiet_mjx import import_mjx_quietly

import_mjx_quietly()  # first: Brax imports MuJoCo MJX, which prints a notice without Warp

from envs.actions import action_bounds  # noqa: E402
from envs.registry import (  # noqa: E402
    check_overrides,
    list_envs,
    make,
    register,
    valid_overrides,
)
from envs.tiny import TinyHazardNav  # noqa: E402
from envs.tiny import _factory as _tiny_factory  # noqa: E402
from envs.wrappers import TimeLimit, WithCost  # noqa: E402

register(
    "TinyHazardNav",
    _tiny_factory,
    "Point in the plane, goal behind a hazard disc; 50-step episodes (our own, for tests).",
)
from envs import locomotion as _locomotion  # noqa: E402, F401
from envs import navigation as _navigation  # noqa: E402, F401

__all__ = ["TimeLimit", "TinyHazardNav", "WithCost", "action_bounds", "check_overrides",
           "list_envs", "make", "register", "valid_overrides"]
