"""(SHAPO-)PPO-Lagrangian update: epochs of shuffled minibatches (paper, Algorithm 4;
docs/algorithms.md §6).

For every minibatch: g = grad L_PPO(theta); with SHAPO, epsilon from that minibatch (its own
g and a Gauss-Newton Fisher on its subsample, `shapo_step`), then g_tilde = grad L_PPO at
theta + epsilon (ratios still over pi_old) goes into the optax optimiser at theta. The critics
take a (sharpness-aware) step on the same minibatch (joint or per critic, `CriticSettings`).
With `PpoSettings.target_kl`, OmniSafe 0.5's KL early stop: after each epoch the mean
KL(pi_old || pi_theta) over the batch is measured, and the epochs after the one in which it
first exceeds the target are not run (a `lax.while_loop`, which vmap runs until the last
member stops).
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
    PolicyGradient,
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


def ppo_policy_gradient(
    networks: Networks, actor_params: ArrayTree, minibatch: UpdateBatch, ppo: PpoSettings,
    shapo: ShapoSettings | None, radius: jax.Array,
) -> PolicyGradient:
    """L_PPO's gradient g on `minibatch` at `actor_params` and, with `shapo`, SHAPO's g_tilde of
    KL radius `radius`, its epsilon from this minibatch's g and a Fisher on its subsample
    (`shapo_step.policy_gradient`; one minibatch step of Algorithm 4)."""
    def objective(params: ArrayTree) -> tuple[jax.Array, PolicyAux]:
        return ppo_objective(params, networks, minibatch, ppo.clip, ppo.entropy_coef)

    def fisher_product():
        obs = fisher_subsample(minibatch.obs, shapo.fisher_fraction)
        return policy_fisher_product(networks, actor_params, obs)

    return policy_gradient(objective, actor_params, shapo, radius, fisher_product,
                           minibatch.cost)


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
        step = ppo_policy_gradient(networks, learner.actor_params, minibatch, ppo, shapo,
                                   hp.shapo_radius)
        ascent = jax.tree_util.tree_map(jnp.negative, step.ascent)  # optax minimises
        updates, actor_opt_state = optimizer.update(
            ascent, learner.actor_opt_state, learner.actor_params
        )
        actor_params = optax.apply_updates(learner.actor_params, updates)
        critic_params, critic_opt_state, critic_metrics = critic_step(
            learner.critic_params, learner.critic_opt_state, critics_optimizer, networks,
            minibatch, hp.critic_radius, sharpness_aware=shapo is not None,
            separate=critic.separate, l2=critic.l2,
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
        # whole batch, stop once it exceeds target_kl (that epoch is kept). A while loop, so the
        # epochs after the stop cost nothing (the 10M study's seeds stop after 1 to 6 of 40);
        # vmapped over members it runs until the last member stops, the others' carries held.
        old_mean, old_log_std = networks.actor.apply(learner.actor_params, batch.obs)
        _, shapes = jax.eval_shape(epoch, learner, epoch_keys[0])
        per_step = jax.tree_util.tree_map(  # (epoch, minibatch) of each metric; NaN: not run
            lambda m: jnp.full((ppo.update_epochs, *m.shape), jnp.nan,
                               jnp.promote_types(m.dtype, jnp.float32)), shapes)

        def running(carry) -> jax.Array:
            done, _, stopped, _, _ = carry
            return (done < ppo.update_epochs) & jnp.logical_not(stopped)

        def next_epoch(carry):
            done, learner, _, _, per_step = carry
            learner, metrics = epoch(learner, epoch_keys[done])
            mean, log_std = networks.actor.apply(learner.actor_params, batch.obs)
            kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
            per_step = jax.tree_util.tree_map(lambda acc, m: acc.at[done].set(m), per_step,
                                              metrics)
            return done + 1, learner, kl > ppo.target_kl, kl, per_step

        init = (jnp.zeros((), jnp.int32), learner, jnp.zeros((), bool),
                jnp.zeros((), old_mean.dtype), per_step)
        done, learner, _, final_kl, per_step = jax.lax.while_loop(running, next_epoch, init)
        # The steps of epochs not run are NaN, left out by nanmean as above.
        metrics = jax.tree_util.tree_map(jnp.nanmean, per_step)
        metrics.update(ppo_epochs_done=done.astype(jnp.float32), ppo_final_kl=final_kl)
        return learner, metrics

    return update
