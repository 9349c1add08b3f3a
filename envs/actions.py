"""The box of actions an environment applies (docs/environments.md §1).

The learner samples from an unbounded Gaussian and leaves the limits to the task, so the action
a policy outputs is not always the action that acts. `action_bounds(env)` gives the box
[low, high] such that stepping with any action a has the effect of stepping with
clip(a, low, high): a policy that clips its output to the box (an exported policy,
`shapo_jax.policy.exported`) outputs exactly the action the task applies.

- the navigation tasks and TinyHazardNav clip the action to [-1, 1] in `step`;
- Brax's robots clamp each control to its actuator's `ctrlrange` (MJX's `fwd_actuation` for
  `ctrllimited` actuators, Brax's generalized `actuator.to_tau` always; unlimited ones have
  an infinite range); Brax's Humanoid first maps [-1, 1] affinely onto the actuators' ranges,
  so its box in action space is [-1, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np


def action_bounds(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), float32 arrays [action_size]: the actions `env` applies (module docstring).

    Raises ValueError for an environment whose action limits are not known here.
    """
    from envs.navigation.task import SafetyNavigation
    from envs.tiny import TinyHazardNav

    inner = getattr(env, "unwrapped", env)
    size = int(env.action_size)
    if isinstance(inner, TinyHazardNav | SafetyNavigation):  # jnp.clip(action, -1, 1) in step
        return -np.ones(size, np.float32), np.ones(size, np.float32)
    sys = getattr(inner, "sys", None)
    ctrl_range = getattr(getattr(sys, "actuator", None), "ctrl_range", None)
    if ctrl_range is None:
        raise ValueError(f"action_bounds: the action limits of {type(inner).__name__} are not "
                         "known (neither a navigation task, TinyHazardNav, nor a Brax robot "
                         "with sys.actuator.ctrl_range)")
    ctrl_range = np.asarray(ctrl_range, np.float64).reshape(-1, 2)
    if len(ctrl_range) != size:
        raise ValueError(f"action_bounds: {type(inner).__name__} has {len(ctrl_range)} "
                         f"actuators for {size} actions")
    low, high = ctrl_range[:, 0], ctrl_range[:, 1]
    if _clamp_disabled(inner, sys):
        low, high = np.full(size, -np.inf), np.full(size, np.inf)
    if _rescales_unit_box(inner):  # Brax's Humanoid: a in [-1, 1] -> low + (a + 1) (high - low) / 2
        span = np.where(np.isfinite(high - low), high - low, np.nan)
        to_action = lambda c: np.where(np.isnan(span), np.sign(c) * np.inf,  # noqa: E731
                                       2.0 * (c - low) / span - 1.0)
        low, high = to_action(low), to_action(high)
    return low.astype(np.float32), high.astype(np.float32)


def _clamp_disabled(inner: Any, sys: Any) -> bool:
    """True when the MJX backend steps without clamping controls (MuJoCo's clampctrl flag)."""
    if getattr(inner, "backend", None) != "mjx":
        return False
    import mujoco

    model = getattr(sys, "mj_model", None)
    flags = int(getattr(getattr(model, "opt", None), "disableflags", 0) or 0)
    return bool(flags & int(mujoco.mjtDisableBit.mjDSBL_CLAMPCTRL))


def _rescales_unit_box(inner: Any) -> bool:
    """Whether the task maps actions in [-1, 1] onto its actuators' ranges before stepping."""
    try:
        from brax.envs.humanoid import Humanoid
    except ImportError:  # pragma: no cover (brax is a dependency)
        return False
    return isinstance(inner, Humanoid)
