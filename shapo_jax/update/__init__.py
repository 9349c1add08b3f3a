"""Stage 3 of the data flow: the Lagrange multiplier and the policy and critic updates."""

from shapo_jax.update.critic import critic_loss, critic_step
from shapo_jax.update.lagrange import (
    LagrangeMultiplier,
    LagrangeState,
    adam_lagrange,
    pid_lagrange,
)
from shapo_jax.update.learner import LearnerState, Networks, UpdateBatch, minibatches
from shapo_jax.update.losses import (
    clipped_surrogate,
    importance_surrogate,
    lagrangian_advantage,
    standardize,
    value_loss,
)
from shapo_jax.update.ppo import ppo_objective, ppo_update

__all__ = [
    "LagrangeMultiplier",
    "LagrangeState",
    "LearnerState",
    "Networks",
    "UpdateBatch",
    "adam_lagrange",
    "clipped_surrogate",
    "critic_loss",
    "critic_step",
    "importance_surrogate",
    "lagrangian_advantage",
    "minibatches",
    "pid_lagrange",
    "ppo_objective",
    "ppo_update",
    "standardize",
    "value_loss",
]
