"""(SHAPO-)TRPO-Lagrangian update on the full batch (paper, Algorithm 3).

  g = grad L_TRPO(theta), L_TRPO = E[r A_lag];
  with SHAPO: epsilon = SHAPO perturbation of radius delta_down (Fisher at theta), and
    g_tilde = grad L_TRPO at theta + epsilon (ratios still over pi_old); else g_tilde = g;
  x = CG(F, g_tilde), F at theta; full step s = sqrt(2 trust_region / (g_tilde^T x)) x;
  backtracking line search over theta + decay^k s, k = 0..line_search_steps - 1, all
    candidates evaluated at once (vmap), keeping the largest fraction whose mean
    KL(pi_theta || pi_candidate) over the batch is <= trust_region and whose surrogate
    improves on L(theta); no step when none qualifies;
  then `critic_epochs` epochs of shuffled minibatch (SAM) steps on both critics.

The Fisher products use the Gauss-Newton form on every k-th sample of the batch,
k = round(1 / fisher_fraction). The actor's optimiser state is not used by TRPO and is
returned unchanged. With delta_down = 0 epsilon is exactly zero, so SHAPO-TRPO-Lag is
TRPO-Lag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import chex
import jax
import jax.numpy as jnp
from chex import ArrayTree
from flax import struct

from shapo_jax.policy import gaussian_kl, gaussian_log_prob
from shapo_jax.sharpness import gaussian_fisher_vector_product, natural_step
from shapo_jax.sharpness.fisher import MatVec
from shapo_jax.sharpness.sam import isolated_value_and_grad
from shapo_jax.sharpness.tree_math import tree_add_scaled
from shapo_jax.update.critic import critic_step
from shapo_jax.update.learner import (
    LearnerState,
    Networks,
    UpdateBatch,
    make_optimizer,
    minibatches,
)
from shapo_jax.update.losses import importance_surrogate
from shapo_jax.update.ppo import perturbed_gradient

if TYPE_CHECKING:  # annotations only: importing it here would be circular
    from shapo_jax.training.config import Hyperparameters, TrainConfig


@struct.dataclass
class LineSearchResult:
    """Outcome of a backtracking line search.

    fraction: the accepted fraction of the full step (0 when none was acceptable).
    kl, improvement: KL and surrogate improvement at the accepted candidate (0 when none).
    accepted: whether some candidate was acceptable.
    candidate_kl, candidate_improvement: the values at every candidate, largest first.
    """

    fraction: jax.Array
    kl: jax.Array
    improvement: jax.Array
    accepted: jax.Array
    candidate_kl: jax.Array
    candidate_improvement: jax.Array


def line_search_fractions(decay: float, steps: int) -> jax.Array:
    """The fractions decay^k, k = 0..steps-1, of the full step, largest first."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"line_search_fractions: decay must lie in (0, 1), got {decay!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"line_search_fractions: steps must be a positive int, got {steps!r}")
    return jnp.asarray(decay, jnp.float32) ** jnp.arange(steps, dtype=jnp.float32)


def backtracking_line_search(
    evaluate: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    baseline_objective: jax.Array,
    fractions: jax.Array,
    max_kl: float | jax.Array,
) -> LineSearchResult:
    """Largest fraction f (first in `fractions`) with KL(f) <= max_kl and objective(f) > baseline.

    `evaluate(f) -> (kl, objective)` at the candidate theta + f * step; all candidates are
    evaluated at once with `jax.vmap`, which trades a little arithmetic for no sequential
    loop. A non-finite KL or objective disqualifies a candidate.
    """
    chex.assert_rank(fractions, 1)
    kls, objectives = jax.vmap(evaluate)(fractions)
    chex.assert_equal_shape([kls, objectives, fractions])
    improvements = objectives - baseline_objective
    acceptable = (
        jnp.isfinite(kls) & jnp.isfinite(improvements) & (kls <= max_kl) & (improvements > 0)
    )
    accepted = jnp.any(acceptable)
    index = jnp.argmax(acceptable)  # the first True (argmax returns the first maximum)
    zero = jnp.zeros((), kls.dtype)
    return LineSearchResult(
        fraction=jnp.where(accepted, fractions[index], zero),
        kl=jnp.where(accepted, kls[index], zero),
        improvement=jnp.where(accepted, improvements[index], zero),
        accepted=accepted,
        candidate_kl=kls,
        candidate_improvement=improvements,
    )


def trpo_objective(
    actor_params: ArrayTree, networks: Networks, batch: UpdateBatch
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """L_TRPO = E[r A_lag] to be maximised; aux: (log_prob, mean, log_std)."""
    mean, log_std = networks.actor.apply(actor_params, batch.obs)
    log_prob = gaussian_log_prob(mean, log_std, batch.action)
    return importance_surrogate(log_prob, batch.old_log_prob, batch.advantage), (
        log_prob, mean, log_std,
    )


def fisher_subsample(obs: jax.Array, fraction: float) -> jax.Array:
    """Every k-th observation, k = round(1 / fraction): the states the Fisher is averaged over."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fisher_subsample: fraction must lie in (0, 1], got {fraction!r}")
    stride = max(1, min(obs.shape[0], int(round(1.0 / fraction))))
    return obs[::stride]


def _fisher_product(
    networks: Networks, actor_params: ArrayTree, obs: jax.Array
) -> MatVec:
    return gaussian_fisher_vector_product(lambda p: networks.actor.apply(p, obs), actor_params)


def trpo_actor_step(
    actor_params: ArrayTree,
    networks: Networks,
    batch: UpdateBatch,
    delta: jax.Array,
    config: TrainConfig,
) -> tuple[ArrayTree, dict[str, jax.Array]]:
    """The (SHAPO-)TRPO policy step on the full batch; returns (new actor params, metrics)."""
    objective = lambda p: trpo_objective(p, networks, batch)  # noqa: E731
    (value, aux), grad = isolated_value_and_grad(objective, actor_params, has_aux=True)
    _, old_mean, old_log_std = aux
    fisher_product = _fisher_product(
        networks, actor_params, fisher_subsample(batch.obs, config.fisher_fraction)
    )

    metrics: dict[str, jax.Array] = {"actor_objective": value}
    if config.uses_shapo:
        ascent_grad, shapo_metrics = perturbed_gradient(
            objective, actor_params, value, aux, grad, fisher_product, delta, batch.cost, config
        )
        metrics.update(shapo_metrics)
    else:
        ascent_grad = grad

    full_step, step_info = natural_step(
        ascent_grad, fisher_product, config.trust_region, cg_iters=config.trpo_cg_iters,
        damping=config.trpo_cg_damping, return_info=True,
    )

    def evaluate(fraction: jax.Array) -> tuple[jax.Array, jax.Array]:
        candidate = tree_add_scaled(actor_params, fraction, full_step)
        candidate_value, (_, mean, log_std) = objective(candidate)
        kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
        return kl, candidate_value

    search = backtracking_line_search(
        evaluate, value,
        line_search_fractions(config.line_search_decay, config.line_search_steps),
        config.trust_region,
    )
    new_params = jax.tree_util.tree_map(
        lambda theta, step: jnp.where(search.accepted, theta + search.fraction * step, theta),
        actor_params, full_step,
    )
    metrics.update(
        trpo_step_fraction=search.fraction,
        trpo_accepted=search.accepted.astype(jnp.float32),
        trpo_kl=search.kl,
        trpo_improvement=search.improvement,
        trpo_g_dot_x=step_info.g_dot_x,
        trpo_predicted_kl=step_info.predicted_kl,
        trpo_cg_residual=step_info.cg_residual,
    )
    return new_params, metrics


def trpo_update(
    learner: LearnerState,
    batch: UpdateBatch,
    key: jax.Array,
    delta: jax.Array,
    hp: Hyperparameters,
    networks: Networks,
    config: TrainConfig,
) -> tuple[LearnerState, dict[str, jax.Array]]:
    """One (SHAPO-)TRPO-Lag update: the policy step, then the critics' minibatch epochs.

    `delta` is delta_down for this update (from the schedule); `hp.rho_critic` is the critics'
    SAM radius (used when `config.uses_shapo`). Returns the new learner state and scalar
    metrics (critic losses averaged over their minibatch steps).
    """
    actor_params, actor_metrics = trpo_actor_step(
        learner.actor_params, networks, batch, delta, config
    )
    optimizer = make_optimizer(config.max_grad_norm)

    def minibatch_step(carry, minibatch: UpdateBatch):
        params, opt_state = carry
        params, opt_state, metrics = critic_step(
            params, opt_state, optimizer, networks, minibatch, hp.rho_critic,
            sharpness_aware=config.uses_shapo,
        )
        return (params, opt_state), metrics

    def epoch(carry, epoch_key: jax.Array):
        return jax.lax.scan(
            minibatch_step, carry, minibatches(batch, epoch_key, config.num_minibatches)
        )

    (critic_params, critic_opt_state), critic_metrics = jax.lax.scan(
        epoch, (learner.critic_params, learner.critic_opt_state),
        jax.random.split(key, config.critic_epochs),
    )
    new_learner = LearnerState(
        actor_params=actor_params,
        critic_params=critic_params,
        actor_opt_state=learner.actor_opt_state,
        critic_opt_state=critic_opt_state,
    )
    metrics = {**actor_metrics, **jax.tree_util.tree_map(jnp.mean, critic_metrics)}
    return new_learner, metrics
