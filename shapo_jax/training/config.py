"""Training configuration: `TrainConfig` holds every setting of a run; the traced,
vmappable ones (`Hyperparameters`) are defined once in `training.hyperparameters`.

Defaults follow OmniSafe's PPO-Lag (cost limit 25, gamma 0.99, GAE lambda 0.95, clip 0.2,
[64, 64] tanh networks, Adam 3e-4, lambda init 0.001 and lr 0.035, observation normalisation,
gradient clipping), with thousands of environments as the norm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from shapo_jax.policy.networks import LAYER_INITS
from shapo_jax.training.hyperparameters import (
    TRACED_SETTINGS,
    Hyperparameters,
    TracedDefaults,
)
from shapo_jax.update.settings import (
    CriticSettings,
    PpoSettings,
    ShapoSettings,
    TrpoSettings,
)

ALGORITHMS = ("ppo_lag", "shapo_ppo_lag", "trpo_lag", "shapo_trpo_lag")
LAGRANGE_METHODS = ("adam", "pid")
ACTOR_LR_SCHEDULES = ("constant", "linear")
DELTA_SCHEDULES = ("constant", "quantile_total", "quantile_batch")
# What the multiplier sees as the episode cost (docs/algorithms.md §10): "recent_episodes" the
# mean cost of the full episodes completed in the latest update (over the last `episode_window`
# updates when fewer than `episode_min_count` completed), "rate" cost per step x episode
# length, "episodes" (0.1's) each env's last full episode ever.
COST_ESTIMATORS = ("recent_episodes", "rate", "episodes")


# Fields renamed since 0.1 (old name -> new name); `from_dict` reads the old names too, so an
# old config.json still resumes (CHANGELOG.md).
RENAMED_FIELDS = {"cg_iters": "shapo_cg_iters", "cg_damping": "shapo_cg_damping"}
# fields that `to_dict` writes only where they differ from their defaults
LEFT_OUT_AT_DEFAULT = ("env_options", "critic_l2", "trpo_kl_per_action_dim", "layer_init")


@dataclasses.dataclass(frozen=True)
class TrainConfig(TracedDefaults):
    """Every setting of a run. The traced ones (delta_down, rho_critic, cost_limit, actor_lr,
    critic_lr, lagrange_lr) are inherited from `TracedDefaults` (see `TRACED_SETTINGS`); the
    others fix the compiled program (shapes, algorithm, loop lengths, constants). The learners'
    defaults are those of their settings groups (`PpoSettings`, `TrpoSettings`, `ShapoSettings`)."""

    env: str = "SafetyPointGoal1"
    # keyword overrides of envs.make(env, ...), e.g. {"solver": "cg", "jacobian": "sparse"};
    # given as a dict, kept as sorted (key, value) pairs so that the config stays hashable
    env_options: tuple[tuple[str, Any], ...] = ()
    algo: str = "shapo_ppo_lag"
    total_steps: int = 2_000_000
    num_envs: int = 1024
    rollout_length: int = 32
    action_repeat: int = 1
    update_epochs: int = PpoSettings.update_epochs
    num_minibatches: int = PpoSettings.num_minibatches
    gamma: float = 0.99
    gae_lambda: float = 0.95
    cost_gamma: float = 0.99
    cost_gae_lambda: float = 0.95
    clip: float = PpoSettings.clip
    entropy_coef: float = PpoSettings.entropy_coef
    max_grad_norm: float = 40.0
    # OmniSafe 0.5's practice (docs/algorithms.md §6, §8): PPO's KL early stop (None: off),
    # the actor's learning rate decayed linearly to 0 over the run, per-critic SAM and clipping
    target_kl: float | None = PpoSettings.target_kl
    actor_lr_schedule: str = "constant"
    separate_critics: bool = False
    # OmniSafe 0.5's critic_norm_coef: l2 * ||w||^2 added to each critic's loss (0: none)
    critic_l2: float = 0.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    # the networks' initialisation (shapo_jax/policy/networks.py: LAYER_INITS)
    layer_init: str = "orthogonal"
    init_log_std: float = -0.5
    normalize_observations: bool = True
    lagrange_method: str = "adam"
    lagrange_init: float = 0.001
    pid_kp: float = 0.1
    pid_ki: float = 0.01
    pid_kd: float = 0.01
    cost_estimator: str = "recent_episodes"
    episode_window: int = 10
    episode_min_count: int = 16
    # every env starts at a random point of its episode (False: all at step 0, in lockstep)
    random_episode_start: bool = True
    # SHAPO (docs/algorithms.md §4, §7)
    # delta_schedule "constant": the KL radius is delta_down. "quantile_total" / "quantile_batch"
    # (paper, Proposition 5): the radius is delta_down * z_alpha^2 / (2 n), n the samples seen so
    # far / in this batch, so delta_down is a scale there: 1.0 gives the paper's schedule.
    delta_schedule: str = "constant"
    pessimism_alpha: float = 0.05
    shapo_cg_iters: int = ShapoSettings.cg_iters
    shapo_cg_damping: float = ShapoSettings.cg_damping
    # the share of a (mini)batch's states the Fisher is averaged over (docs/algorithms.md §5);
    # SHAPO's perturbation and TRPO's natural step use the same one
    fisher_fraction: float = ShapoSettings.fisher_fraction
    # TRPO (paper, Algorithm 3)
    trust_region: float = TrpoSettings.trust_region
    trpo_cg_iters: int = TrpoSettings.cg_iters
    trpo_cg_damping: float = TrpoSettings.cg_damping
    line_search_steps: int = TrpoSettings.line_search_steps
    line_search_decay: float = TrpoSettings.line_search_decay
    critic_epochs: int = TrpoSettings.critic_epochs
    # OmniSafe 0.5 averages TRPO's KL over the action dimensions as well as the states; with
    # True, trust_region and trpo_cg_damping are in those units (docs/algorithms.md §6)
    trpo_kl_per_action_dim: bool = False
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
        if self.layer_init not in LAYER_INITS:
            fail(f"layer_init={self.layer_init!r}; valid: {LAYER_INITS}")
        if isinstance(self.episode_min_count, bool) or not isinstance(
                self.episode_min_count, int) or self.episode_min_count < 0:
            fail(f"episode_min_count={self.episode_min_count!r}; must be an integer >= 0")
        if not isinstance(self.random_episode_start, bool):
            fail(f"random_episode_start={self.random_episode_start!r}; must be true or false")
        if self.cost_estimator not in COST_ESTIMATORS:
            fail(f"cost_estimator={self.cost_estimator!r}; valid: {COST_ESTIMATORS}")
        for name in ("total_steps", "num_envs", "rollout_length", "action_repeat", "update_epochs",
                     "num_minibatches", "shapo_cg_iters", "trpo_cg_iters", "episode_window",
                     "line_search_steps",
                     "critic_epochs", "num_seeds", "log_every_steps", "eval_every", "eval_envs",
                     "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name}={value!r}; must be a positive integer")
        for setting in TRACED_SETTINGS:
            setting.check(getattr(self, setting.name))
        for name in ("entropy_coef", "lagrange_init", "shapo_cg_damping", "trpo_cg_damping",
                     "pid_kp", "pid_ki", "pid_kd", "critic_l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                    isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                fail(f"{name}={value!r}; must be a finite number >= 0")
        if self.actor_lr_schedule not in ACTOR_LR_SCHEDULES:
            fail(f"actor_lr_schedule={self.actor_lr_schedule!r}; valid: {ACTOR_LR_SCHEDULES}")
        if self.target_kl is not None and not (
                isinstance(self.target_kl, int | float) and not isinstance(self.target_kl, bool)
                and math.isfinite(self.target_kl) and self.target_kl > 0):
            fail(f"target_kl={self.target_kl!r}; must be null (off) or a finite number > 0")
        for name in ("separate_critics", "trpo_kl_per_action_dim"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name}={getattr(self, name)!r}; must be true or false")
        positive = ("clip", "max_grad_norm", "trust_region")
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
        """The traced settings this config runs with (`TracedSetting.value_for`: plain
        PPO/TRPO-Lag run at delta_down = rho_critic = 0)."""
        return Hyperparameters.from_values(self.traced_values())

    def traced_values(self) -> dict[str, float]:
        """name -> value of every traced setting, as this config runs it."""
        return {s.name: s.value_for(self) for s in TRACED_SETTINGS}

    # ----- the grouped settings of the update factories --------------------------------
    def shapo_settings(self) -> ShapoSettings | None:
        """SHAPO's Fisher solve, or None for the plain algorithms."""
        if not self.uses_shapo:
            return None
        return ShapoSettings(cg_iters=self.shapo_cg_iters, cg_damping=self.shapo_cg_damping,
                             fisher_fraction=self.fisher_fraction)

    def ppo_settings(self) -> PpoSettings:
        return PpoSettings(clip=self.clip, entropy_coef=self.entropy_coef,
                           update_epochs=self.update_epochs,
                           num_minibatches=self.num_minibatches, target_kl=self.target_kl)

    def critic_settings(self) -> CriticSettings:
        return CriticSettings(separate=self.separate_critics, max_grad_norm=self.max_grad_norm,
                              l2=self.critic_l2)

    def trpo_settings(self, action_size: int | None = None) -> TrpoSettings:
        """TRPO's settings in the summed-over-actions KL the learner measures. With
        `trpo_kl_per_action_dim`, the KL OmniSafe 0.5 bounds is that KL / action_size, so its
        trust region and damping are ours divided by action_size: both are multiplied by it
        here, which gives the same step and line search in exact arithmetic (docs/algorithms.md
        §6)."""
        scale = 1
        if self.trpo_kl_per_action_dim:
            if action_size is None or action_size < 1:
                raise ValueError("trpo_kl_per_action_dim=True needs the environment's action "
                                 f"size (a positive integer), got {action_size!r}")
            scale = action_size
        return TrpoSettings(
            trust_region=self.trust_region * scale, cg_iters=self.trpo_cg_iters,
            cg_damping=self.trpo_cg_damping * scale, fisher_fraction=self.fisher_fraction,
            line_search_steps=self.line_search_steps, line_search_decay=self.line_search_decay,
            critic_epochs=self.critic_epochs, num_minibatches=self.num_minibatches,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        out["env_options"] = dict(self.env_options)
        # Fields added since sweeps first named their runs are left out at their defaults, so
        # that the run ids (digests of this dict) stay those of configs written before them.
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        for name in LEFT_OUT_AT_DEFAULT:
            if getattr(self, name) == defaults[name]:
                del out[name]
        return out

    def make_env(self):
        """`envs.make(env, **env_options)`: the environment this config trains on."""
        import envs

        return envs.make(self.env, **dict(self.env_options))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from `to_dict`'s form; fields renamed since (RENAMED_FIELDS) are read under
        their new names, and a dict giving both names is refused."""
        data = dict(data)
        for old, new in RENAMED_FIELDS.items():
            if old in data:
                if new in data:
                    raise ValueError(f"config gives both {old!r} and its new name {new!r}")
                data[new] = data.pop(old)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid: {sorted(fields)}")
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
