"""Tying the stages together: configuration, the jitted trainer, the host-side program,
checkpoints and the CLI."""

import envs.quiet_mjx  # noqa: F401  (first: MuJoCo MJX without Warp's notice)
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.hyperparameters import (
    TRACED_SETTINGS,
    Hyperparameters,
    TracedSetting,
    stack_hyperparameters,
)
from shapo_jax.training.train import EvalResult, Trainer, TrainState, make_train

__all__ = [
    "TRACED_SETTINGS",
    "EvalResult",
    "Hyperparameters",
    "TracedSetting",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "make_train",
    "stack_hyperparameters",
]
