"""(SHAPO-)PPO-Lagrangian update: epochs of shuffled minibatches (paper, Algorithm 4;
docs/algorithms.md §6).

For every minibatch: g = grad L_PPO(theta); with SHAPO, epsilon from that minibatch (its own
g and a Gauss-Newton Fisher on its subsample, `shapo_step`), then g_tilde = grad L_PPO at
theta + epsilon (ratios still over pi_old) goes into the optax optimiser at theta. The critics
take a (sharpness-aware) step on the same minibatch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from chex import ArrayTree

from shapo_jax.policy import gaussian_entropy, gaussian_log_prob
from shapo_jax.update.critic import critic_step
from shapo_jax.update.learner import LearnerState, Networks, PolicyUpdate, UpdateBatch, minibatches
from shapo_jax.update.losses import clipped_surrogate
from shapo_jax.update.settings import PpoSettings, ShapoSettings, UpdateHyperparameters
from shapo_jax.update.shapo_step import (
    PolicyAux,
    fisher_subsample,
    policy_fisher_product,
    policy_gradient,
)


def ppo_objective(
    actor_params: ArrayTree, networks: Networks, batch: UpdateBatch, clip: float,
    entropy_coef: float,
) -> tuple[jax.Array, PolicyAux]:
    """L_PPO (+ entropy bonus) to be maximised; aux: (log_prob, mean, log_std)."""
    mean, log_std = networks.actor.apply(actor_params, batch.obs)
    log_prob = gaussian_log_prob(mean, log_std, batch.action)
    objective = clipped_surrogate(log_prob, batch.old_log_prob, batch.advantage, clip)
    objective = objective + entropy_coef * gaussian_entropy(log_std).mean()
    return objective, (log_prob, mean, log_std)


def make_ppo_update(
    networks: Networks,
    optimizer: optax.GradientTransformation,
    *,
    ppo: PpoSettings | None = None,
    shapo: ShapoSettings | None = None,
) -> PolicyUpdate:
    """The (SHAPO-)PPO-Lag update `update(learner, batch, key, hp) -> (learner, metrics)`.

    `optimizer` steps the actor and the critics (its learning rates live in their states);
    `shapo=None` is PPO-Lag, otherwise SHAPO-PPO-Lag with radius `hp.shapo_radius` and SAM
    critics of radius `hp.critic_radius`. Metrics are means over all minibatch steps.
    """
    ppo = PpoSettings() if ppo is None else ppo

    def minibatch_step(learner: LearnerState, minibatch: UpdateBatch, hp: UpdateHyperparameters):
        def objective(params: ArrayTree) -> tuple[jax.Array, PolicyAux]:
            return ppo_objective(params, networks, minibatch, ppo.clip, ppo.entropy_coef)

        def fisher_product():
            obs = fisher_subsample(minibatch.obs, shapo.fisher_fraction)
            return policy_fisher_product(networks, learner.actor_params, obs)

        step = policy_gradient(objective, learner.actor_params, shapo, hp.shapo_radius,
                               fisher_product, minibatch.cost)
        ascent = jax.tree_util.tree_map(jnp.negative, step.ascent)  # optax minimises
        updates, actor_opt_state = optimizer.update(
            ascent, learner.actor_opt_state, learner.actor_params
        )
        actor_params = optax.apply_updates(learner.actor_params, updates)
        critic_params, critic_opt_state, critic_metrics = critic_step(
            learner.critic_params, learner.critic_opt_state, optimizer, networks, minibatch,
            hp.critic_radius, sharpness_aware=shapo is not None,
        )
        learner = LearnerState(actor_params, critic_params, actor_opt_state, critic_opt_state)
        return learner, {**step.metrics, **critic_metrics}

    def update(learner: LearnerState, batch: UpdateBatch, key: jax.Array,
               hp: UpdateHyperparameters) -> tuple[LearnerState, dict[str, jax.Array]]:
        def epoch(learner: LearnerState, epoch_key: jax.Array):
            return jax.lax.scan(lambda s, mb: minibatch_step(s, mb, hp), learner,
                                minibatches(batch, epoch_key, ppo.num_minibatches))

        learner, metrics = jax.lax.scan(epoch, learner, jax.random.split(key, ppo.update_epochs))
        # nanmean: a minibatch without costly samples has no mean weight over them.
        return learner, jax.tree_util.tree_map(jnp.nanmean, metrics)

    return update
