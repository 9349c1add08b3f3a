"""(SHAPO-)PPO-Lagrangian update: epochs of shuffled minibatches (paper, Algorithm 4;
docs/algorithms.md §6).

For every minibatch: g = grad L_PPO(theta); with SHAPO, epsilon from that minibatch (its own
g and a Gauss-Newton Fisher on its subsample, `shapo_step`), then g_tilde = grad L_PPO at
theta + epsilon (ratios still over pi_old) goes into the optax optimiser at theta. The critics
take a (sharpness-aware) step on the same minibatch (joint or per critic, `CriticSettings`).
With `PpoSettings.target_kl`, OmniSafe 0.5's KL early stop: after each epoch the mean
KL(pi_old || pi_theta) over the batch is measured, and the epochs after the one in which it
first exceeds the target change nothing (masked, not a Python break).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from chex import ArrayTree

from shapo_jax.policy import gaussian_entropy, gaussian_kl, gaussian_log_prob
from shapo_jax.update.critic import check_critic_state, critic_optimizer, critic_step
from shapo_jax.update.learner import LearnerState, Networks, PolicyUpdate, UpdateBatch, minibatches
from shapo_jax.update.losses import clipped_surrogate
from shapo_jax.update.settings import (
    CriticSettings,
    PpoSettings,
    ShapoSettings,
    UpdateHyperparameters,
)
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
    critic: CriticSettings | None = None,
) -> PolicyUpdate:
    """The (SHAPO-)PPO-Lag update `update(learner, batch, key, hp) -> (learner, metrics)`.

    `optimizer` (`make_optimizer`) steps the actor and the critics (its learning rates live in
    their states); `shapo=None` is PPO-Lag, otherwise SHAPO-PPO-Lag with radius
    `hp.shapo_radius` and SAM critics of radius `hp.critic_radius`. `critic`: joint
    (default) or per-critic SAM and clipping (docs/algorithms.md §8). Metrics are means over
    the minibatch steps applied; with `ppo.target_kl` also `ppo_epochs_done` (epochs applied)
    and `ppo_final_kl` (mean KL(pi_old || pi_theta) over the batch after the last of them).
    """
    ppo = PpoSettings() if ppo is None else ppo
    critic = CriticSettings() if critic is None else critic
    critics_optimizer = critic_optimizer(optimizer, critic)

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
            learner.critic_params, learner.critic_opt_state, critics_optimizer, networks,
            minibatch, hp.critic_radius, sharpness_aware=shapo is not None,
            separate=critic.separate,
        )
        learner = LearnerState(actor_params, critic_params, actor_opt_state, critic_opt_state)
        return learner, {**step.metrics, **critic_metrics}

    def update(learner: LearnerState, batch: UpdateBatch, key: jax.Array,
               hp: UpdateHyperparameters) -> tuple[LearnerState, dict[str, jax.Array]]:
        if critic.separate:
            check_critic_state(critics_optimizer, learner.critic_opt_state, learner.critic_params)

        def epoch(learner: LearnerState, epoch_key: jax.Array):
            return jax.lax.scan(lambda s, mb: minibatch_step(s, mb, hp), learner,
                                minibatches(batch, epoch_key, ppo.num_minibatches))

        epoch_keys = jax.random.split(key, ppo.update_epochs)
        if ppo.target_kl is None:
            learner, metrics = jax.lax.scan(epoch, learner, epoch_keys)
            # nanmean: a minibatch without costly samples has no mean weight over them.
            return learner, jax.tree_util.tree_map(jnp.nanmean, metrics)

        # KL early stop (OmniSafe 0.5's order): run the epoch, measure the KL from pi_old on the
        # whole batch; the epoch is kept unless an earlier one already exceeded target_kl.
        old_mean, old_log_std = networks.actor.apply(learner.actor_params, batch.obs)

        def stoppable_epoch(carry, epoch_key: jax.Array):
            learner, stopped, final_kl = carry
            new_learner, metrics = epoch(learner, epoch_key)
            mean, log_std = networks.actor.apply(new_learner.actor_params, batch.obs)
            kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
            learner = jax.tree_util.tree_map(lambda new, old: jnp.where(stopped, old, new),
                                             new_learner, learner)
            applied = jnp.logical_not(stopped)
            final_kl = jnp.where(stopped, final_kl, kl)
            stopped = stopped | (kl > ppo.target_kl)
            return (learner, stopped, final_kl), (metrics, applied)

        init = (learner, jnp.zeros((), bool), jnp.zeros((), old_mean.dtype))
        (learner, _, final_kl), (metrics, applied) = jax.lax.scan(stoppable_epoch, init,
                                                                  epoch_keys)
        # The steps of skipped epochs count as missing; nanmean as above.
        metrics = jax.tree_util.tree_map(
            lambda m: jnp.nanmean(jnp.where(applied.reshape((-1,) + (1,) * (m.ndim - 1)), m,
                                            jnp.nan)),
            metrics,
        )
        metrics.update(ppo_epochs_done=applied.sum().astype(jnp.float32), ppo_final_kl=final_kl)
        return learner, metrics

    return update
