"""Safe environments with a Brax-compatible interface, and their registry.

    env = envs.make("TinyHazardNav")
    state = env.reset(key); state = env.step(state, action); cost = state.info["cost"]
"""

from envs.registry import check_overrides, list_envs, make, register, valid_overrides
from envs.tiny import TinyHazardNav
from envs.tiny import _factory as _tiny_factory
from envs.wrappers import TimeLimit, WithCost

register(
    "TinyHazardNav",
    _tiny_factory,
    "Point in the plane, goal behind a hazard disc; 50-step episodes (our own, for tests).",
)
from envs import locomotion as _locomotion  # noqa: E402, F401
from envs import navigation as _navigation  # noqa: E402, F401

__all__ = ["TimeLimit", "TinyHazardNav", "WithCost", "check_overrides", "list_envs", "make",
           "register", "valid_overrides"]
