"""The traced settings of a run, defined once.

A traced setting is a number that may differ between runs vmapped in one compiled program
(seeds x settings of a sweep). `TRACED_SETTINGS` is the one list of them: `Hyperparameters`
(the pytree the trainer receives), the fields of `TrainConfig` that hold their values, the
config's checks, shapo-train's and shapo-sweep's flags and the sweep's grid axes are all
derived from it. Each setting also says which configurations read it: the others ignore it,
so a sweep axis over it is refused there, and `off_value` (when given) is what those
configurations run with (plain PPO-Lag/TRPO-Lag are SHAPO at radius 0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class TracedSetting:
    """One traced setting: its default, its bound, and which configurations read it."""

    name: str
    default: float
    help: str
    positive: bool  # must be > 0 (else >= 0)
    short: str = ""  # the label in figures
    used_by: Callable[[Any], bool] = lambda config: True
    unused_reason: str = ""  # why a configuration that does not read it ignores it
    off_value: float | None = None  # the value where it is unused (None: the configured one)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Raise ValueError naming the setting, the bad value and the valid range."""
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value) and (value > 0 if self.positive else value >= 0))
        if not ok:
            bound = "> 0" if self.positive else ">= 0"
            raise ValueError(f"invalid config: {self.name}={value!r}; must be a finite number "
                             f"{bound}")

    def value_for(self, config: Any) -> float:
        """The value `config` runs with: its own, or `off_value` where it is unused."""
        if self.off_value is not None and not self.used_by(config):
            return self.off_value
        return float(getattr(config, self.name))


TRACED_SETTINGS: tuple[TracedSetting, ...] = (
    TracedSetting(
        "delta_down", 0.005,
        "SHAPO's KL radius (a scale under the quantile schedules; docs/algorithms.md §4, §7)",
        positive=False, short="delta", used_by=lambda c: c.uses_shapo, off_value=0.0,
        unused_reason="plain PPO-Lag/TRPO-Lag run at radius 0"),
    TracedSetting(
        "rho_critic", 0.01, "SAM radius of the critics (docs/algorithms.md §8)",
        positive=False, short="rho", used_by=lambda c: c.uses_shapo, off_value=0.0,
        unused_reason="plain PPO-Lag/TRPO-Lag take plain critic steps"),
    TracedSetting("cost_limit", 25.0, "episode cost limit d", positive=False, short="d"),
    TracedSetting(
        "actor_lr", 3e-4, "Adam learning rate of the actor", positive=True, short="lr_pi",
        used_by=lambda c: not c.uses_trpo,
        unused_reason="TRPO steps the actor by its trust region, not by Adam"),
    TracedSetting("critic_lr", 3e-4, "Adam learning rate of the critics", positive=True,
                  short="lr_v"),
    TracedSetting(
        "lagrange_lr", 0.035, "Adam learning rate of the Lagrange multiplier", positive=True,
        short="lr_lam",
        used_by=lambda c: c.lagrange_method == "adam",
        unused_reason="the PID multiplier has gains (pid_kp, pid_ki, pid_kd), no learning rate"),
)
TRACED_NAMES: tuple[str, ...] = tuple(s.name for s in TRACED_SETTINGS)


def traced_setting(name: str) -> TracedSetting:
    """The setting called `name` (a ValueError listing the valid names otherwise)."""
    for setting in TRACED_SETTINGS:
        if setting.name == name:
            return setting
    raise ValueError(f"{name!r} is not a traced setting; valid: {list(TRACED_NAMES)}")


@struct.dataclass
class Hyperparameters:
    """The traced settings of one run (float32 scalars; stacked for vmapped runs).
    The fields are exactly `TRACED_SETTINGS`, in order (checked at import)."""

    delta_down: jax.Array
    rho_critic: jax.Array
    cost_limit: jax.Array
    actor_lr: jax.Array
    critic_lr: jax.Array
    lagrange_lr: jax.Array

    @classmethod
    def from_values(cls, values: dict[str, float]) -> Hyperparameters:
        missing = sorted(set(TRACED_NAMES) - set(values))
        if missing:
            raise ValueError(f"hyperparameters {missing} missing")
        return cls(**{name: jnp.float32(values[name]) for name in TRACED_NAMES})


if tuple(f.name for f in dataclasses.fields(Hyperparameters)) != TRACED_NAMES:
    raise AssertionError("Hyperparameters' fields must be TRACED_SETTINGS' names, in order")

# The fields of TrainConfig that hold the traced settings' values (TrainConfig derives from it).
TracedDefaults = dataclasses.make_dataclass(
    "TracedDefaults",
    [(s.name, float, dataclasses.field(default=s.default)) for s in TRACED_SETTINGS],
    frozen=True,
)
TracedDefaults.__doc__ = "The traced settings' values of a config (see TRACED_SETTINGS)."


def stack_hyperparameters(members: list[Hyperparameters]) -> Hyperparameters:
    """Stack runs' settings along a new leading axis (for `jax.vmap`)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *members)
