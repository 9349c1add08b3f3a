"""Stage 3 of the data flow: the Lagrange multiplier and the policy and critic updates."""

from shapo_jax.update.critic import critic_gradient, critic_loss, critic_optimizer, critic_step
from shapo_jax.update.lagrange import (
    LagrangeMultiplier,
    LagrangeState,
    adam_lagrange,
    pid_lagrange,
)
from shapo_jax.update.learner import (
    LearnerState,
    Networks,
    PolicyUpdate,
    UpdateBatch,
    clip_each_by_global_norm,
    init_optimizer,
    make_optimizer,
    minibatches,
)
from shapo_jax.update.losses import (
    clipped_surrogate,
    importance_surrogate,
    lagrangian_advantage,
    standardize,
    value_loss,
)
from shapo_jax.update.ppo import make_ppo_update, ppo_objective, ppo_policy_gradient
from shapo_jax.update.settings import (
    DEFAULT_CG_DAMPING,
    CriticSettings,
    PpoSettings,
    ShapoSettings,
    TrpoSettings,
    UpdateHyperparameters,
)
from shapo_jax.update.shapo_step import PolicyGradient, fisher_subsample, policy_gradient
from shapo_jax.update.trpo import make_trpo_update, trpo_objective

__all__ = [
    "CriticSettings",
    "DEFAULT_CG_DAMPING",
    "LagrangeMultiplier",
    "LagrangeState",
    "LearnerState",
    "Networks",
    "PolicyGradient",
    "PolicyUpdate",
    "PpoSettings",
    "ShapoSettings",
    "TrpoSettings",
    "UpdateBatch",
    "UpdateHyperparameters",
    "adam_lagrange",
    "clip_each_by_global_norm",
    "clipped_surrogate",
    "critic_gradient",
    "critic_loss",
    "critic_optimizer",
    "critic_step",
    "fisher_subsample",
    "importance_surrogate",
    "init_optimizer",
    "lagrangian_advantage",
    "make_optimizer",
    "make_ppo_update",
    "make_trpo_update",
    "minibatches",
    "pid_lagrange",
    "policy_gradient",
    "ppo_objective",
    "ppo_policy_gradient",
    "standardize",
    "trpo_objective",
    "value_loss",
]
