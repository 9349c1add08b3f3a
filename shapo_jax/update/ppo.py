"""(SHAPO-)PPO-Lagrangian update: epochs of shuffled minibatches (paper, Algorithm 4).

For every minibatch: g = grad L_PPO(theta); with SHAPO, epsilon from that minibatch (its own
g and a Gauss-Newton Fisher on a subsample of it), then g_tilde = grad L_PPO at theta + epsilon
(ratios still over pi_old) goes into the optax optimiser at theta. The critics take a
(sharpness-aware) step on the same minibatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax
from chex import ArrayTree

from shapo_jax.policy import gaussian_entropy, gaussian_kl, gaussian_log_prob
from shapo_jax.sharpness import (
    gaussian_fisher_vector_product,
    shapo_perturbation,
    summarize_reweighting,
)
from shapo_jax.sharpness.sam import isolated_value_and_grad
from shapo_jax.sharpness.tree_math import tree_add_scaled, tree_select
from shapo_jax.update.critic import critic_step
from shapo_jax.update.learner import (
    LearnerState,
    Networks,
    UpdateBatch,
    make_optimizer,
    minibatches,
)
from shapo_jax.update.losses import clipped_surrogate

if TYPE_CHECKING:  # annotations only: importing it here would be circular
    from shapo_jax.training.config import TrainConfig


def ppo_objective(
    actor_params: ArrayTree, networks: Networks, batch: UpdateBatch, clip: float,
    entropy_coef: float,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """L_PPO (+ entropy bonus) to be maximised; aux: (log_prob, mean, log_std)."""
    mean, log_std = networks.actor.apply(actor_params, batch.obs)
    log_prob = gaussian_log_prob(mean, log_std, batch.action)
    objective = clipped_surrogate(log_prob, batch.old_log_prob, batch.advantage, clip)
    objective = objective + entropy_coef * gaussian_entropy(log_std).mean()
    return objective, (log_prob, mean, log_std)


def shapo_diagnostics(
    log_prob: jax.Array, mean: jax.Array, log_std: jax.Array,
    perturbed_aux: tuple[jax.Array, jax.Array, jax.Array], cost: jax.Array,
) -> dict[str, jax.Array]:
    """Per-state sharpness KL(pi_theta || pi_(theta+eps)) and the reweighting w (App. C)."""
    perturbed_log_prob, perturbed_mean, perturbed_log_std = perturbed_aux
    weights = jnp.exp(perturbed_log_prob - log_prob)
    summary = summarize_reweighting(weights, cost)
    return {
        "shapo_kl": gaussian_kl(mean, log_std, perturbed_mean, perturbed_log_std).mean(),
        "shapo_weight_costly": summary.mean_weight_costly,
        "shapo_weight_safe": summary.mean_weight_safe,
    }


def perturbed_gradient(
    objective: Callable[[ArrayTree], tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]],
    actor_params: ArrayTree,
    value: jax.Array,
    aux: tuple[jax.Array, jax.Array, jax.Array],
    grad: ArrayTree,
    fisher_product: Callable[[ArrayTree], ArrayTree],
    delta: jax.Array,
    cost: jax.Array,
    config: TrainConfig,
) -> tuple[ArrayTree, dict[str, jax.Array]]:
    """The SHAPO step shared by PPO and TRPO: epsilon from the Fisher solve (radius `delta`),
    g_tilde = grad of `objective` at theta + epsilon, and SHAPO's diagnostics.

    `value`, `aux` and `grad` are the objective's value, aux and gradient at theta.
    """
    epsilon, info = shapo_perturbation(
        None, None, actor_params, delta, cg_iters=config.cg_iters, damping=config.cg_damping,
        fisher_product=fisher_product, grad=grad, return_info=True,
    )
    perturbed = tree_add_scaled(actor_params, 1.0, epsilon)
    (perturbed_value, perturbed_aux), perturbed_grad = jax.value_and_grad(
        objective, has_aux=True
    )(perturbed)
    metrics = {
        "shapo_objective_drop": value - perturbed_value,
        "shapo_g_dot_x": info.g_dot_x,
        "shapo_predicted_kl": info.predicted_kl,
        "shapo_cg_residual": info.cg_residual,
        **shapo_diagnostics(*aux, perturbed_aux, cost),
    }
    # delta = 0 means epsilon = 0: hand back the plain gradient itself, so the SHAPO learner at
    # delta_down = 0 is the plain one bit for bit, however XLA fuses the second evaluation.
    return tree_select(delta > 0, perturbed_grad, grad), metrics


def shapo_policy_gradient(
    actor_params: ArrayTree,
    networks: Networks,
    batch: UpdateBatch,
    delta: jax.Array,
    config: TrainConfig,
) -> tuple[ArrayTree, dict[str, jax.Array]]:
    """g_tilde = grad L_PPO at theta + epsilon (the SHAPO gradient) and its diagnostics."""
    objective = lambda p: ppo_objective(p, networks, batch, config.clip, config.entropy_coef)  # noqa: E731
    (value, aux), grad = isolated_value_and_grad(objective, actor_params, has_aux=True)
    fisher_size = max(1, int(round(config.fisher_fraction * batch.obs.shape[0])))
    fisher_obs = batch.obs[:fisher_size]  # the minibatch is already shuffled
    fisher_product = gaussian_fisher_vector_product(
        lambda p: networks.actor.apply(p, fisher_obs), actor_params
    )
    ascent_grad, metrics = perturbed_gradient(
        objective, actor_params, value, aux, grad, fisher_product, delta, batch.cost, config
    )
    return ascent_grad, {"actor_objective": value, **metrics}


def ppo_update(
    learner: LearnerState,
    batch: UpdateBatch,
    key: jax.Array,
    delta: jax.Array,
    rho: jax.Array,
    networks: Networks,
    config: TrainConfig,
) -> tuple[LearnerState, dict[str, jax.Array]]:
    """`update_epochs` passes of `num_minibatches` minibatches; returns mean metrics."""
    optimizer = make_optimizer(config.max_grad_norm)

    def minibatch_step(learner: LearnerState, minibatch: UpdateBatch):
        if config.uses_shapo:
            grad, metrics = shapo_policy_gradient(
                learner.actor_params, networks, minibatch, delta, config
            )
        else:
            objective = lambda p: ppo_objective(  # noqa: E731
                p, networks, minibatch, config.clip, config.entropy_coef
            )
            (value, _), grad = isolated_value_and_grad(
                objective, learner.actor_params, has_aux=True
            )
            metrics = {"actor_objective": value}
        ascent = jax.tree_util.tree_map(jnp.negative, grad)  # optax minimises
        updates, actor_opt_state = optimizer.update(
            ascent, learner.actor_opt_state, learner.actor_params
        )
        actor_params = optax.apply_updates(learner.actor_params, updates)
        critic_params, critic_opt_state, critic_metrics = critic_step(
            learner.critic_params, learner.critic_opt_state, optimizer, networks, minibatch, rho,
            sharpness_aware=config.uses_shapo,
        )
        learner = LearnerState(actor_params, critic_params, actor_opt_state, critic_opt_state)
        return learner, {**metrics, **critic_metrics}

    def epoch(learner: LearnerState, epoch_key: jax.Array):
        return jax.lax.scan(
            minibatch_step, learner, minibatches(batch, epoch_key, config.num_minibatches)
        )

    learner, metrics = jax.lax.scan(epoch, learner, jax.random.split(key, config.update_epochs))
    # nanmean: a minibatch without costly samples has no mean weight over them.
    return learner, jax.tree_util.tree_map(jnp.nanmean, metrics)
