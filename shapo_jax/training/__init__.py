"""Tying the stages together: configuration, the jitted trainer, checkpoints and the CLI."""

from shapo_jax.training.config import Hyperparameters, TrainConfig, stack_hyperparameters
from shapo_jax.training.train import EvalResult, Trainer, TrainState, make_train

__all__ = [
    "EvalResult",
    "Hyperparameters",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "make_train",
    "stack_hyperparameters",
]
