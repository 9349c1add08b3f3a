"""(SHAPO-)TRPO-Lagrangian update on the full batch (paper, Algorithm 3; docs/algorithms.md §6).

  g = grad L_TRPO(theta), L_TRPO = E[r A_lag];
  with SHAPO: epsilon = SHAPO perturbation of radius delta_down (Fisher at theta), and
    g_tilde = grad L_TRPO at theta + epsilon (ratios still over pi_old); else g_tilde = g;
  x = CG(F, g_tilde), F at theta; full step s = sqrt(2 trust_region / (g_tilde^T x)) x;
  backtracking line search over theta + decay^k s, k = 0..line_search_steps - 1, all
    candidates evaluated at once (vmap), keeping the largest fraction whose mean
    KL(pi_theta || pi_candidate) over the batch is <= trust_region and whose surrogate
    improves on L(theta); no step when none qualifies;
  then `critic_epochs` epochs of shuffled minibatch (SAM) steps on both critics.

The Fisher products use the Gauss-Newton form on the subsample of `shapo_step.fisher_subsample`
(docs/algorithms.md §5), shared by SHAPO's perturbation and the natural step. The actor's
optimiser state is not used by TRPO and is returned unchanged. With radius 0 epsilon is
exactly zero and g_tilde is g bit for bit, so SHAPO-TRPO-Lag is TRPO-Lag; the natural step's
CG may round differently in the last bit, as XLA compiles it next to SHAPO's own solve.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax
from chex import ArrayTree
from flax import struct

from shapo_jax.policy import gaussian_kl, gaussian_log_prob
from shapo_jax.sharpness import natural_step
from shapo_jax.sharpness.tree_math import tree_add_scaled
from shapo_jax.update.critic import check_critic_state, critic_optimizer, critic_step
from shapo_jax.update.learner import LearnerState, Networks, PolicyUpdate, UpdateBatch, minibatches
from shapo_jax.update.losses import importance_surrogate
from shapo_jax.update.settings import (
    CriticSettings,
    ShapoSettings,
    TrpoSettings,
    UpdateHyperparameters,
)
from shapo_jax.update.shapo_step import (
    PolicyAux,
    fisher_subsample,
    policy_fisher_product,
    policy_gradient,
)


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
) -> tuple[jax.Array, PolicyAux]:
    """L_TRPO = E[r A_lag] to be maximised; aux: (log_prob, mean, log_std)."""
    mean, log_std = networks.actor.apply(actor_params, batch.obs)
    log_prob = gaussian_log_prob(mean, log_std, batch.action)
    return importance_surrogate(log_prob, batch.old_log_prob, batch.advantage), (
        log_prob, mean, log_std,
    )


def trpo_actor_step(
    actor_params: ArrayTree,
    networks: Networks,
    batch: UpdateBatch,
    radius: jax.Array,
    trpo: TrpoSettings,
    shapo: ShapoSettings | None,
) -> tuple[ArrayTree, dict[str, jax.Array]]:
    """The (SHAPO-)TRPO policy step on the full batch; returns (new actor params, metrics).

    `radius` is SHAPO's KL radius for this update (ignored without `shapo`)."""
    objective = lambda p: trpo_objective(p, networks, batch)  # noqa: E731
    fisher_product = policy_fisher_product(
        networks, actor_params, fisher_subsample(batch.obs, trpo.fisher_fraction)
    )
    step = policy_gradient(objective, actor_params, shapo, radius, lambda: fisher_product,
                           batch.cost)
    _, old_mean, old_log_std = step.aux
    full_step, step_info = natural_step(
        step.ascent, fisher_product, trpo.trust_region, cg_iters=trpo.cg_iters,
        damping=trpo.cg_damping, return_info=True,
    )

    def evaluate(fraction: jax.Array) -> tuple[jax.Array, jax.Array]:
        candidate = tree_add_scaled(actor_params, fraction, full_step)
        candidate_value, (_, mean, log_std) = objective(candidate)
        kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
        return kl, candidate_value

    search = backtracking_line_search(
        evaluate, step.value,
        line_search_fractions(trpo.line_search_decay, trpo.line_search_steps),
        trpo.trust_region,
    )
    new_params = jax.tree_util.tree_map(
        lambda theta, s: jnp.where(search.accepted, theta + search.fraction * s, theta),
        actor_params, full_step,
    )
    metrics = dict(step.metrics)
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


def make_trpo_update(
    networks: Networks,
    optimizer: optax.GradientTransformation,
    *,
    trpo: TrpoSettings | None = None,
    shapo: ShapoSettings | None = None,
    critic: CriticSettings | None = None,
) -> PolicyUpdate:
    """The (SHAPO-)TRPO-Lag update `update(learner, batch, key, hp) -> (learner, metrics)`:
    the policy step, then `trpo.critic_epochs` epochs of minibatch steps on the critics.

    `optimizer` (`make_optimizer`) steps the critics; `shapo=None` is TRPO-Lag, otherwise
    SHAPO-TRPO-Lag with radius `hp.shapo_radius` and SAM critics of radius
    `hp.critic_radius`; `critic`: joint (default) or per-critic SAM and clipping
    (docs/algorithms.md §8). Metrics: the policy step's, and the critic losses averaged over
    their minibatch steps.
    """
    trpo = TrpoSettings() if trpo is None else trpo
    critic = CriticSettings() if critic is None else critic
    critics_optimizer = critic_optimizer(optimizer, critic)

    def minibatch_step(carry, minibatch: UpdateBatch, hp: UpdateHyperparameters):
        params, opt_state = carry
        params, opt_state, metrics = critic_step(
            params, opt_state, critics_optimizer, networks, minibatch, hp.critic_radius,
            sharpness_aware=shapo is not None, separate=critic.separate, l2=critic.l2,
        )
        return (params, opt_state), metrics

    def update(learner: LearnerState, batch: UpdateBatch, key: jax.Array,
               hp: UpdateHyperparameters) -> tuple[LearnerState, dict[str, jax.Array]]:
        if critic.separate:
            check_critic_state(critics_optimizer, learner.critic_opt_state, learner.critic_params)
        actor_params, actor_metrics = trpo_actor_step(
            learner.actor_params, networks, batch, hp.shapo_radius, trpo, shapo
        )

        def epoch(carry, epoch_key: jax.Array):
            return jax.lax.scan(lambda c, mb: minibatch_step(c, mb, hp), carry,
                                minibatches(batch, epoch_key, trpo.num_minibatches))

        (critic_params, critic_opt_state), critic_metrics = jax.lax.scan(
            epoch, (learner.critic_params, learner.critic_opt_state),
            jax.random.split(key, trpo.critic_epochs),
        )
        new_learner = LearnerState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt_state=learner.actor_opt_state,
            critic_opt_state=critic_opt_state,
        )
        return new_learner, {**actor_metrics, **jax.tree_util.tree_map(jnp.mean, critic_metrics)}

    return update
