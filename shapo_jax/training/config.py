"""Training configuration: static settings (`TrainConfig`) and traced, vmappable ones
(`Hyperparameters`). Defaults follow OmniSafe's PPO-Lag (cost limit 25, gamma 0.99, GAE
lambda 0.95, clip 0.2, [64, 64] tanh networks, Adam 3e-4, lambda init 0.001 and lr 0.035,
observation normalisation, gradient clipping), with thousands of environments as the norm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

ALGORITHMS = ("ppo_lag", "shapo_ppo_lag", "trpo_lag", "shapo_trpo_lag")
LAGRANGE_METHODS = ("adam", "pid")
DELTA_SCHEDULES = ("constant", "quantile_total", "quantile_batch")
COST_ESTIMATORS = ("rate", "episodes")


@struct.dataclass
class Hyperparameters:
    """Numeric settings that may differ between members of one vmapped sweep (traced)."""

    delta_down: jax.Array
    rho_critic: jax.Array
    cost_limit: jax.Array
    actor_lr: jax.Array
    critic_lr: jax.Array
    lagrange_lr: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes the compiled program (shapes, algorithm, static settings)."""

    env: str = "SafetyPointGoal1"
    # keyword overrides of envs.make(env, ...), e.g. {"solver": "cg", "jacobian": "sparse"};
    # given as a dict, kept as sorted (key, value) pairs so that the config stays hashable
    env_options: tuple[tuple[str, Any], ...] = ()
    algo: str = "shapo_ppo_lag"
    total_steps: int = 2_000_000
    num_envs: int = 1024
    rollout_length: int = 32
    action_repeat: int = 1
    update_epochs: int = 4
    num_minibatches: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    cost_gamma: float = 0.99
    cost_gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 40.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = -0.5
    normalize_observations: bool = True
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    cost_limit: float = 25.0
    lagrange_method: str = "adam"
    lagrange_init: float = 0.001
    lagrange_lr: float = 0.035
    pid_kp: float = 0.1
    pid_ki: float = 0.01
    pid_kd: float = 0.01
    cost_estimator: str = "rate"
    # SHAPO (DESIGN.md section 1)
    # delta_schedule "constant": the KL radius is delta_down. "quantile_total" / "quantile_batch"
    # (paper, Proposition 5): the radius is delta_down * z_alpha^2 / (2 n), n the samples seen so
    # far / in this batch, so delta_down is a scale there: 1.0 gives the paper's schedule.
    delta_down: float = 0.005
    delta_schedule: str = "constant"
    pessimism_alpha: float = 0.05
    rho_critic: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    fisher_fraction: float = 0.25
    # TRPO (paper, Algorithm 3)
    trust_region: float = 0.01
    trpo_cg_iters: int = 15
    trpo_cg_damping: float = 0.1
    line_search_steps: int = 15
    line_search_decay: float = 0.8
    critic_epochs: int = 4
    # bookkeeping
    seed: int = 0
    num_seeds: int = 1
    log_every_steps: int = 100_000
    eval_every: int = 5
    eval_envs: int = 16
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_options", _option_pairs(self.env_options))
        self.validate()

    @property
    def uses_shapo(self) -> bool:
        return self.algo.startswith("shapo_")

    @property
    def uses_trpo(self) -> bool:
        return self.algo.endswith("trpo_lag")

    @property
    def batch_size(self) -> int:
        """Policy steps per update (over all envs)."""
        return self.num_envs * self.rollout_length

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def env_steps_per_update(self) -> int:
        return self.batch_size * self.action_repeat

    @property
    def updates_per_log(self) -> int:
        """Updates per compiled call; metrics are logged after each call."""
        needed = max(1, math.ceil(self.total_steps / self.env_steps_per_update))
        updates = round(self.log_every_steps / self.env_steps_per_update)
        return max(1, min(needed, updates))

    @property
    def num_updates(self) -> int:
        """Updates of the run: total_steps rounded up to whole log chunks, so one compiled
        program of `updates_per_log` updates serves the whole run."""
        needed = max(1, math.ceil(self.total_steps / self.env_steps_per_update))
        return math.ceil(needed / self.updates_per_log) * self.updates_per_log

    def validate(self) -> None:
        """Raise ValueError naming the bad setting and what would be valid."""
        def fail(message: str) -> None:
            raise ValueError(f"invalid config: {message}")

        if self.algo not in ALGORITHMS:
            fail(f"algo={self.algo!r}; valid: {', '.join(ALGORITHMS)}")
        if self.lagrange_method not in LAGRANGE_METHODS:
            fail(f"lagrange_method={self.lagrange_method!r}; valid: {LAGRANGE_METHODS}")
        if self.delta_schedule not in DELTA_SCHEDULES:
            fail(f"delta_schedule={self.delta_schedule!r}; valid: {DELTA_SCHEDULES}")
        if self.cost_estimator not in COST_ESTIMATORS:
            fail(f"cost_estimator={self.cost_estimator!r}; valid: {COST_ESTIMATORS}")
        for name in ("total_steps", "num_envs", "rollout_length", "action_repeat", "update_epochs",
                     "num_minibatches", "cg_iters", "trpo_cg_iters", "line_search_steps",
                     "critic_epochs", "num_seeds", "log_every_steps", "eval_every", "eval_envs",
                     "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name}={value!r}; must be a positive integer")
        for name in ("delta_down", "rho_critic", "cost_limit", "entropy_coef", "lagrange_init",
                     "cg_damping", "trpo_cg_damping", "pid_kp", "pid_ki", "pid_kd"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                fail(f"{name}={value!r}; must be a finite number >= 0")
        positive = ("actor_lr", "critic_lr", "lagrange_lr", "clip", "max_grad_norm", "trust_region")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                fail(f"{name}={value!r}; must be a finite number > 0")
        for name in ("gamma", "gae_lambda", "cost_gamma", "cost_gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                fail(f"{name}={value!r}; must lie in [0, 1]")
        if not 0.0 < self.fisher_fraction <= 1.0:
            fail(f"fisher_fraction={self.fisher_fraction!r}; must lie in (0, 1]")
        if not 0.0 < self.line_search_decay < 1.0:
            fail(f"line_search_decay={self.line_search_decay!r}; must lie in (0, 1)")
        if not 0.0 < self.pessimism_alpha < 0.5:
            fail(f"pessimism_alpha={self.pessimism_alpha!r}; must lie in (0, 0.5)")
        if self.batch_size % self.num_minibatches:
            fail(f"num_envs * rollout_length = {self.batch_size} is not divisible by "
                 f"num_minibatches={self.num_minibatches}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            fail(f"hidden_sizes={self.hidden_sizes!r}; must be positive layer widths")

    def hyperparameters(self) -> Hyperparameters:
        """The traced settings of this config; plain PPO/TRPO-Lag force delta_down = rho = 0."""
        shapo = self.uses_shapo
        return Hyperparameters(
            delta_down=jnp.float32(self.delta_down if shapo else 0.0),
            rho_critic=jnp.float32(self.rho_critic if shapo else 0.0),
            cost_limit=jnp.float32(self.cost_limit),
            actor_lr=jnp.float32(self.actor_lr),
            critic_lr=jnp.float32(self.critic_lr),
            lagrange_lr=jnp.float32(self.lagrange_lr),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        # Without options the key is left out, so that the run ids of sweeps (digests of this
        # dict) stay those of configs written before the field existed.
        if self.env_options:
            out["env_options"] = dict(self.env_options)
        else:
            del out["env_options"]
        return out

    def make_env(self):
        """`envs.make(env, **env_options)`: the environment this config trains on."""
        import envs

        return envs.make(self.env, **dict(self.env_options))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid: {sorted(fields)}")
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(int(h) for h in data["hidden_sizes"])
        return cls(**data)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return _option_pairs(value)
    return value


def _option_pairs(options: Any) -> tuple[tuple[str, Any], ...]:
    """env_options as sorted (key, value) pairs from a dict or pairs (lists become tuples)."""
    try:
        items = dict(options).items()
    except (TypeError, ValueError):
        raise ValueError(f"invalid config: env_options={options!r}; must be a mapping of "
                         "environment overrides, e.g. {\"solver\": \"cg\"}") from None
    for key, _ in items:
        if not isinstance(key, str):
            raise ValueError(f"invalid config: env_options key {key!r}; must be a string")
    return tuple(sorted((key, _hashable(value)) for key, value in items))


def stack_hyperparameters(members: list[Hyperparameters]) -> Hyperparameters:
    """Stack sweep members along a new leading axis (for `jax.vmap`)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *members)
