"""The SHAPO step shared by both learners (docs/algorithms.md §4-5; paper, Algorithm 3
lines 4-7 and Algorithm 4 lines 6-9).

For a policy objective L to be maximised at theta (a PPO minibatch or the TRPO batch):
g = grad L(theta); epsilon = -sqrt(2 delta / g^T x) x with x = CG(F, g), F the Gauss-Newton
Fisher on a subsample of the states; g_tilde = grad L(theta + epsilon), ratios still over
pi_old. The optimiser (PPO) or the natural step (TRPO) then uses g_tilde at theta. With
radius 0 the plain gradient itself is returned, bit for bit, so SHAPO-PPO at delta_down = 0
is the plain learner bit for bit (SHAPO-TRPO to the last bit of its natural step's CG, which
XLA compiles next to SHAPO's solve).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from chex import ArrayTree

from shapo_jax.policy import gaussian_kl
from shapo_jax.sharpness import (
    gaussian_fisher_vector_product,
    shapo_perturbation,
    summarize_reweighting,
)
from shapo_jax.sharpness.fisher import MatVec
from shapo_jax.sharpness.sam import isolated_value_and_grad
from shapo_jax.sharpness.tree_math import tree_add_scaled, tree_select
from shapo_jax.update.learner import Networks
from shapo_jax.update.settings import ShapoSettings

# aux of a policy objective: (log_prob, mean, log_std) of the batch's actions and states.
PolicyAux = tuple[jax.Array, jax.Array, jax.Array]
PolicyObjective = Callable[[ArrayTree], tuple[jax.Array, PolicyAux]]


def fisher_subsample(obs: jax.Array, fraction: float) -> jax.Array:
    """The states the Fisher is averaged over: m = max(1, round(fraction * n)) of the n rows
    at evenly spaced positions floor(i n / m), i = 0..m-1 (docs/algorithms.md §5).

    Evenly spaced rather than a prefix: TRPO's batch is time-major and unshuffled, so a
    prefix would hold only the first steps of the rollout; PPO's minibatch is shuffled
    either way. Exactly `fraction` of the states (to rounding) for any n.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fisher_subsample: fraction must lie in (0, 1], got {fraction!r}")
    n = obs.shape[0]
    m = max(1, min(n, round(fraction * n)))
    if n % m == 0:
        return obs[:: n // m]  # the same rows as below, as a strided slice (no gather)
    return obs[(jnp.arange(m) * n) // m]


def policy_fisher_product(networks: Networks, actor_params: ArrayTree, obs: jax.Array) -> MatVec:
    """v -> F v, the Gauss-Newton Fisher of the Gaussian policy at `actor_params` on `obs`."""
    return gaussian_fisher_vector_product(lambda p: networks.actor.apply(p, obs), actor_params)


def shapo_diagnostics(aux: PolicyAux, perturbed_aux: PolicyAux,
                      cost: jax.Array) -> dict[str, jax.Array]:
    """Per-state KL(pi_theta || pi_(theta+eps)), its mean and largest value, and the
    reweighting w on costly and cost-free samples (docs/algorithms.md §9; paper, Appendix C)."""
    log_prob, mean, log_std = aux
    perturbed_log_prob, perturbed_mean, perturbed_log_std = perturbed_aux
    chex.assert_equal_shape([log_prob, perturbed_log_prob, cost])
    log_weights = perturbed_log_prob - log_prob
    summary = summarize_reweighting(jnp.exp(log_weights), cost, log_weights)
    kl = gaussian_kl(mean, log_std, perturbed_mean, perturbed_log_std)
    return {
        "shapo_kl": kl.mean(),
        "shapo_kl_max": kl.max(),
        "shapo_weight_costly": summary.mean_weight_costly,
        "shapo_weight_safe": summary.mean_weight_safe,
        "shapo_geometric_weight_costly": summary.geometric_weight_costly,
        "shapo_geometric_weight_safe": summary.geometric_weight_safe,
    }


class PolicyGradient(NamedTuple):
    """The objective at theta and the gradient a learner steps along.

    value, aux, grad: L(theta), its aux and the plain gradient g.
    ascent: g_tilde with SHAPO (g itself at radius 0 or without SHAPO).
    metrics: actor_objective and, with SHAPO, its diagnostics.
    """

    value: jax.Array
    aux: PolicyAux
    grad: ArrayTree
    ascent: ArrayTree
    metrics: dict[str, jax.Array]


def policy_gradient(
    objective: PolicyObjective,
    actor_params: ArrayTree,
    shapo: ShapoSettings | None,
    radius: jax.Array,
    fisher_product: Callable[[], MatVec],
    cost: jax.Array,
) -> PolicyGradient:
    """g at theta and, when `shapo` is given, the SHAPO gradient of KL radius `radius`.

    `fisher_product()` builds the Fisher product (called only with SHAPO); `cost` is the
    per-sample cost of the objective's batch, for the reweighting diagnostic.
    """
    # Behind an optimisation barrier: the plain gradient compiles the same in the SHAPO and
    # the plain program, so that radius 0 reproduces the plain learner bit for bit.
    (value, aux), grad = isolated_value_and_grad(objective, actor_params, has_aux=True)
    metrics: dict[str, jax.Array] = {"actor_objective": value}
    if shapo is None:
        return PolicyGradient(value, aux, grad, grad, metrics)
    epsilon, info = shapo_perturbation(
        None, None, actor_params, radius, cg_iters=shapo.cg_iters, damping=shapo.cg_damping,
        fisher_product=fisher_product(), grad=grad, return_info=True,
    )
    perturbed = tree_add_scaled(actor_params, 1.0, epsilon)
    (perturbed_value, perturbed_aux), perturbed_grad = jax.value_and_grad(
        objective, has_aux=True
    )(perturbed)
    metrics.update(
        shapo_objective_drop=value - perturbed_value,
        shapo_g_dot_x=info.g_dot_x,
        shapo_predicted_kl=info.predicted_kl,
        shapo_cg_residual=info.cg_residual,
        **shapo_diagnostics(aux, perturbed_aux, cost),
    )
    # radius = 0 means epsilon = 0: hand back g itself, however XLA fuses the second pass.
    ascent = tree_select(radius > 0, perturbed_grad, grad)
    return PolicyGradient(value, aux, grad, ascent, metrics)
