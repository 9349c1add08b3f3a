"""The learners' actor steps against dense float64 references (docs/algorithms.md §4-6;
paper, Algorithm 3 lines 4-9 and Algorithm 4 lines 6-9).

A reference shares nothing with the learner but the network's forward pass and JAX's
autodiff: the Gaussian log-density, the clipped and the importance surrogate and the entropy
are written from their formulas, the Fisher is an explicit matrix on the subsample's rows
(`helpers.dense_gaussian_fisher`), every solve is `np.linalg.solve`, the clip and Adam are
written out (`helpers.hand_adam`) and the line search is a Python loop. Each test draws a
fresh random network and batch (the seed is in the failure message) and runs in float64 with
enough CG iterations to converge, so a learner must give its reference to rounding: one that
stepped along g instead of g_tilde, took the Fisher on other states or with another damping,
or swapped a radius, would not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    dense_gaussian_fisher,
    dense_natural_direction,
    flat,
    fresh_seed,
    hand_adam,
    numpy_gaussian_kl,
    numpy_subsample,
)
from jax.flatten_util import ravel_pytree

from shapo_jax.policy import Critic, GaussianActor
from shapo_jax.update import (
    LearnerState,
    Networks,
    PpoSettings,
    ShapoSettings,
    TrpoSettings,
    UpdateBatch,
    UpdateHyperparameters,
    init_optimizer,
    make_optimizer,
    make_ppo_update,
    ppo_policy_gradient,
)
from shapo_jax.update.trpo import trpo_actor_step

OBS_DIM, ACTION_DIM, BATCH = 3, 2, 64
NETWORKS = Networks(actor=GaussianActor(ACTION_DIM, hidden_sizes=(8,)),
                    critic=Critic(hidden_sizes=(8,)))
CG_ITERS = 120  # over twice the actor's 52 parameters: CG has converged in float64
# CG stops at a residual norm of 1e-10 (`natural_step`'s cg_tol), which leaves errors near 1e-8
# in a solve whose smallest eigenvalue is the damping (>= 0.01).
RTOL, ATOL = 1e-6, 1e-7


def random_params(module, rng: np.random.Generator, log_std: bool) -> dict:
    """float64 weights: kernels N(0, 0.7^2) (a policy that reacts to the state, a full-rank
    Fisher), biases N(0, 0.1^2), the log-std around -0.5."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, OBS_DIM)))

    def leaf(path, shape):
        if log_std and "log_std" in jax.tree_util.keystr(path):
            value = -0.5 + 0.3 * rng.standard_normal(shape.shape)
        else:
            value = (0.7 if len(shape.shape) == 2 else 0.1) * rng.standard_normal(shape.shape)
        return jnp.asarray(value, jnp.float64)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def hand_log_prob(mean, log_std, action):
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def random_problem(seed: int, old_policy_spread: float):
    """Actor and batch: actions drawn from pi_old, whose weights are the actor's plus
    N(0, spread^2) noise (0: pi_old = pi_theta, a batch's first step; > 0: a later minibatch,
    ratios away from 1 and some of them clipped), random advantages and a 0/1 cost."""
    rng = np.random.default_rng(seed)
    actor_params = random_params(NETWORKS.actor, rng, log_std=True)
    old_params = jax.tree_util.tree_map(
        lambda p: p + old_policy_spread * rng.standard_normal(p.shape), actor_params)
    obs = jnp.asarray(1.5 * rng.standard_normal((BATCH, OBS_DIM)))
    old_mean, old_log_std = NETWORKS.actor.apply(old_params, obs)
    action = old_mean + jnp.exp(old_log_std) * rng.standard_normal(old_mean.shape)
    targets = rng.standard_normal((3, BATCH))
    batch = UpdateBatch(
        obs=obs, action=action, old_log_prob=hand_log_prob(old_mean, old_log_std, action),
        advantage=jnp.asarray(targets[0]), reward_target=jnp.asarray(targets[1]),
        cost_target=jnp.asarray(targets[2]),
        cost=jnp.asarray((rng.uniform(size=BATCH) < 0.3).astype(np.float64)),
    )
    return rng, actor_params, batch


def hand_ppo_objective(params, batch: UpdateBatch, clip: float, entropy_coef: float):
    """E[A min(r, 1 + c)] where A >= 0, E[A max(r, 1 - c)] where A < 0, plus the entropy
    sum_i (log sigma_i + log(2 pi e) / 2) times its coefficient."""
    mean, log_std = NETWORKS.actor.apply(params, batch.obs)
    ratio = jnp.exp(hand_log_prob(mean, log_std, batch.action) - batch.old_log_prob)
    bounded = jnp.where(batch.advantage >= 0, jnp.minimum(ratio, 1 + clip),
                        jnp.maximum(ratio, 1 - clip))
    entropy = jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)
    return jnp.mean(bounded * batch.advantage) + entropy_coef * jnp.mean(entropy)


def hand_trpo_objective(params, batch: UpdateBatch):
    mean, log_std = NETWORKS.actor.apply(params, batch.obs)
    ratio = jnp.exp(hand_log_prob(mean, log_std, batch.action) - batch.old_log_prob)
    return jnp.mean(ratio * batch.advantage)


def mean_kl(params_p, params_q, obs) -> float:
    """E_s KL(pi_p(.|s) || pi_q(.|s)) from the textbook formula."""
    return float(numpy_gaussian_kl(*NETWORKS.actor.apply(params_p, obs),
                                   *NETWORKS.actor.apply(params_q, obs)).mean())


class ShapoReference:
    """SHAPO's step from dense pieces for the objective `objective(flat params)`:
    g = grad L(theta), eps = -sqrt(2 delta / g^T x) x, x = (F + d I)^-1 g,
    g_tilde = grad L(theta + eps)."""

    def __init__(self, objective, theta: np.ndarray, fisher: np.ndarray, damping: float,
                 radius: float):
        value_and_grad = jax.value_and_grad(objective)
        value, grad = value_and_grad(jnp.asarray(theta))
        self.value, self.grad = float(value), np.asarray(grad)
        step, self.g_dot_x = dense_natural_direction(fisher, damping, self.grad, radius)
        self.epsilon = -step
        self.predicted_kl = 0.5 * float(self.epsilon @ fisher @ self.epsilon)
        perturbed_value, ascent = value_and_grad(jnp.asarray(theta + self.epsilon))
        self.objective_drop = self.value - float(perturbed_value)
        self.ascent = np.asarray(ascent)


def assert_close(got, want, what: str, seed: int):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=RTOL, atol=ATOL,
                               err_msg=f"{what} (seed {seed})")


@pytest.mark.parametrize("old_policy_spread", [0.0, 0.1])
def test_shapo_ppo_gradient_is_the_dense_perturbed_gradient(old_policy_spread):
    """ppo_policy_gradient: g, g_tilde, g^T x, the predicted KL (1/2 eps^T F eps), the
    objective's drop and the realised mean KL of eps, against the dense reference on the
    minibatch's `fisher_fraction` subsample."""
    seed = fresh_seed()
    with jax.enable_x64(True):
        rng, actor_params, batch = random_problem(seed, old_policy_spread)
        clip, entropy_coef = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.0, 0.05))
        radius, damping = float(rng.uniform(0.002, 0.05)), float(rng.uniform(0.01, 0.2))
        fraction = float(rng.uniform(0.2, 1.0))
        shapo = ShapoSettings(cg_iters=CG_ITERS, cg_damping=damping, fisher_fraction=fraction)
        ppo = PpoSettings(clip=clip, entropy_coef=entropy_coef)
        step = jax.jit(lambda p, b, r: ppo_policy_gradient(NETWORKS, p, b, ppo, shapo, r))(
            actor_params, batch, jnp.float64(radius))

        theta, unravel = ravel_pytree(actor_params)
        fisher = dense_gaussian_fisher(
            NETWORKS.actor, actor_params, numpy_subsample(np.asarray(batch.obs), fraction))
        ref = ShapoReference(lambda f: hand_ppo_objective(unravel(f), batch, clip, entropy_coef),
                             np.asarray(theta), fisher, damping, radius)
        perturbed = unravel(jnp.asarray(np.asarray(theta) + ref.epsilon))
        realised_kl = mean_kl(actor_params, perturbed, batch.obs)

    assert_close(step.value, ref.value, "L_PPO(theta)", seed)
    assert_close(flat(step.grad), ref.grad, "g", seed)
    assert_close(flat(step.ascent), ref.ascent, "g_tilde", seed)
    metrics = step.metrics
    assert_close(metrics["shapo_g_dot_x"], ref.g_dot_x, "g^T x", seed)
    assert_close(metrics["shapo_predicted_kl"], ref.predicted_kl, "1/2 eps^T F eps", seed)
    assert_close(metrics["shapo_objective_drop"], ref.objective_drop, "L(theta) - L(theta+eps)",
                 seed)
    assert_close(metrics["shapo_kl"], realised_kl, "mean KL(pi_theta || pi_theta+eps)", seed)
    # The case is one where SHAPO matters: g_tilde is not g, and eps lowers the objective.
    assert np.linalg.norm(ref.ascent - ref.grad) > 1e-3 * np.linalg.norm(ref.grad), seed
    assert ref.objective_drop > 0, seed


def warm_adam_state(state, params, rng: np.random.Generator, count: int):
    """The actor's optimiser state with random first and second moments and step count, so
    that the step depends on the gradient's values, not only on its signs (a fresh Adam's
    first step is lr * g / |g|)."""
    clip_state, inject = state
    adam, *rest = inject.inner_state
    mu = jax.tree_util.tree_map(lambda p: jnp.asarray(0.05 * rng.standard_normal(p.shape),
                                                      p.dtype), params)
    nu = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.uniform(1e-4, 1e-2, p.shape),
                                                      p.dtype), params)
    adam = adam._replace(count=jnp.asarray(count, adam.count.dtype), mu=mu, nu=nu)
    return clip_state, inject._replace(inner_state=(adam, *rest))


@pytest.mark.parametrize("algo", ["ppo_lag", "shapo_ppo_lag"])
def test_ppo_update_is_one_clipped_adam_step_along_the_reference_gradient(algo):
    """make_ppo_update with one epoch of one minibatch (the whole batch, shuffled): the
    actor moves by Adam (from a warm state) along -clip(g_tilde) for SHAPO-PPO-Lag and
    -clip(g) for PPO-Lag, the global-norm clip at a random fraction of the gradient's norm."""
    seed = fresh_seed()
    with jax.enable_x64(True):
        rng, actor_params, batch = random_problem(seed, old_policy_spread=0.1)
        clip, entropy_coef = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.0, 0.05))
        radius, damping = float(rng.uniform(0.002, 0.05)), float(rng.uniform(0.01, 0.2))
        theta, unravel = ravel_pytree(actor_params)
        # fisher_fraction 1: the shuffled minibatch's subsample is all of its states.
        fisher = dense_gaussian_fisher(NETWORKS.actor, actor_params, np.asarray(batch.obs))
        ref = ShapoReference(lambda f: hand_ppo_objective(unravel(f), batch, clip, entropy_coef),
                             np.asarray(theta), fisher, damping, radius)
        direction = ref.ascent if algo == "shapo_ppo_lag" else ref.grad
        max_norm = float(rng.uniform(0.3, 3.0) * np.linalg.norm(direction))
        optimizer = make_optimizer(max_norm)
        critic_params = {name: random_params(NETWORKS.critic, rng, log_std=False)
                         for name in ("reward", "cost")}
        actor_state = warm_adam_state(
            init_optimizer(optimizer, actor_params, float(rng.uniform(1e-3, 1e-2))),
            actor_params, rng, count=int(rng.integers(1, 50)))
        learner = LearnerState(actor_params, critic_params, actor_state,
                               init_optimizer(optimizer, critic_params, 1e-3))
        shapo = (ShapoSettings(cg_iters=CG_ITERS, cg_damping=damping, fisher_fraction=1.0)
                 if algo == "shapo_ppo_lag" else None)
        update = make_ppo_update(
            NETWORKS, optimizer, shapo=shapo,
            ppo=PpoSettings(clip=clip, entropy_coef=entropy_coef, update_epochs=1,
                            num_minibatches=1))
        hp = UpdateHyperparameters(shapo_radius=jnp.float64(radius),
                                   critic_radius=jnp.float64(0.01))
        new, _ = jax.jit(update)(learner, batch, jax.random.PRNGKey(seed), hp)

    ascent = -direction
    clipped = ascent * min(1.0, max_norm / np.linalg.norm(ascent))
    want = hand_adam({"params": actor_params}, actor_state,
                     {"params": clipped})["params"]
    assert_close(flat(new.actor_params), want, f"{algo}'s actor after one Adam step", seed)
    # The step is not the other learner's: g_tilde and g lead to different parameters.
    other = hand_adam({"params": actor_params}, actor_state,
                      {"params": -(ref.grad if algo == "shapo_ppo_lag" else ref.ascent)})
    assert not np.allclose(want, other["params"], rtol=RTOL, atol=ATOL), seed


def reference_line_search(objective, kl_of, theta: np.ndarray, step: np.ndarray,
                          trust_region: float, fractions: np.ndarray) -> float:
    """The first fraction f of `fractions` whose candidate theta + f step keeps the mean KL
    within the trust region and improves the surrogate; 0 if none does."""
    baseline = float(objective(jnp.asarray(theta)))
    for fraction in fractions:
        candidate = theta + fraction * step
        if (kl_of(candidate) <= trust_region
                and float(objective(jnp.asarray(candidate))) > baseline):
            return float(fraction)
    return 0.0


@pytest.mark.parametrize("algo", ["trpo_lag", "shapo_trpo_lag"])
def test_trpo_actor_step_is_the_dense_natural_step_and_line_search(algo):
    """trpo_actor_step: the direction (F + d I)^-1 g_tilde (g for TRPO-Lag) scaled to the
    trust region, F on `trpo.fisher_fraction`'s subsample (SHAPO's perturbation uses the
    same F with its own damping), then the first acceptable fraction of the line search.
    Trust regions up to 0.5 reach beyond the KL's quadratic model, so that the search often
    backs off."""
    seed = fresh_seed()
    with jax.enable_x64(True):
        rng, actor_params, batch = random_problem(seed, old_policy_spread=0.0)
        trust_region = float(rng.uniform(0.05, 0.5))
        radius = float(rng.uniform(0.1, 0.5) * trust_region)
        trpo = TrpoSettings(trust_region=trust_region, cg_iters=CG_ITERS,
                            cg_damping=float(rng.uniform(0.01, 0.2)),
                            fisher_fraction=float(rng.uniform(0.2, 1.0)))
        shapo = (ShapoSettings(cg_iters=CG_ITERS, cg_damping=float(rng.uniform(0.01, 0.2)),
                               fisher_fraction=1.0)  # not used: TRPO's subsample serves both
                 if algo == "shapo_trpo_lag" else None)
        new_params, metrics = jax.jit(
            lambda p, b, r: trpo_actor_step(p, NETWORKS, b, r, trpo, shapo))(
            actor_params, batch, jnp.float64(radius))

        theta, unravel = ravel_pytree(actor_params)
        theta = np.asarray(theta)
        fisher = dense_gaussian_fisher(
            NETWORKS.actor, actor_params,
            numpy_subsample(np.asarray(batch.obs), trpo.fisher_fraction))

        def objective(f):
            return hand_trpo_objective(unravel(f), batch)

        if shapo is None:
            direction = np.asarray(jax.grad(objective)(jnp.asarray(theta)))
        else:
            direction = ShapoReference(objective, theta, fisher, shapo.cg_damping,
                                       radius).ascent
        step, g_dot_x = dense_natural_direction(fisher, trpo.cg_damping, direction,
                                                trust_region)
        fractions = np.float32(trpo.line_search_decay) ** np.arange(
            trpo.line_search_steps, dtype=np.float32)
        fraction = reference_line_search(
            objective, lambda f: mean_kl(actor_params, unravel(jnp.asarray(f)), batch.obs),
            theta, step, trust_region, fractions.astype(np.float64))

    assert_close(metrics["trpo_g_dot_x"], g_dot_x, "g_tilde^T x", seed)
    assert_close(metrics["trpo_predicted_kl"], 0.5 * step @ fisher @ step, "1/2 s^T F s", seed)
    assert_close(metrics["trpo_step_fraction"], fraction, "accepted fraction", seed)
    assert_close(flat(new_params), theta + fraction * step, f"{algo}'s new actor", seed)
    assert fraction > 0, f"no step accepted (seed {seed})"
