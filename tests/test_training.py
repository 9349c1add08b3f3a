"""The jitted trainer: SHAPO at zero radius is PPO-Lag, vmap over seeds and settings, learning."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_learns_with_cost_held_near_limit, fresh_rng, fresh_seed

import envs
from shapo_jax.training import TrainConfig, make_train, stack_hyperparameters

# lagrange_init 0.5: the cost advantage weighs in the Lagrangian advantage from the start.
# Lockstep episodes: the three updates checked here must each hold whole 50-step episodes (with
# random starts the first ones are cut short before the point reaches the hazard, and the
# batches hold no cost for the diagnostics to weigh).
SMALL = dict(env="TinyHazardNav", num_envs=32, rollout_length=50, num_minibatches=4,
             update_epochs=2, cost_limit=2.0, lagrange_init=0.5, random_episode_start=False)
UPDATES = 3
DELTA = 0.02


@functools.cache
def jitted(algo: str, **overrides):
    """(trainer, jitted init, jitted run of UPDATES updates) for SMALL; hp is an argument."""
    config = TrainConfig(**SMALL, algo=algo, **overrides)
    trainer = make_train(config, config.make_env())
    run = jax.jit(lambda state, hp: trainer.run(state, UPDATES, hp))
    return trainer, jax.jit(trainer.init), run


def hyperparameters(config: TrainConfig, delta_down: float, rho_critic: float):
    return config.hyperparameters().replace(delta_down=jnp.float32(delta_down),
                                            rho_critic=jnp.float32(rho_critic))


def train(algo: str, seed: int, delta_down: float = 0.0, rho_critic: float = 0.0, **overrides):
    trainer, init, run = jitted(algo, delta_down=0.0, rho_critic=0.0, **overrides)
    hp = hyperparameters(trainer.config, delta_down, rho_critic)
    return run(init(jax.random.PRNGKey(seed), hp), hp)


def assert_trees_equal(a, b) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(a)
    for (path, x), y in zip(leaves, jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))


# ----- delta_down = 0 and rho_critic = 0: SHAPO-PPO-Lag is PPO-Lag ---------------------


def test_shapo_ppo_with_zero_radius_is_ppo_lag_bit_for_bit():
    seed = fresh_seed()  # one key for both runs
    plain, plain_metrics = train("ppo_lag", seed)
    shapo, shapo_metrics = train("shapo_ppo_lag", seed)
    # Every leaf of the state: actor, critics, both optimisers, lambda, statistics, envs.
    assert_trees_equal(plain, shapo)
    shared = sorted(set(plain_metrics) & set(shapo_metrics))
    assert {"episode_return", "episode_cost", "lagrange_multiplier", "policy_kl",
            "actor_objective", "cumulative_cost"} <= set(shared)
    for key in shared:
        np.testing.assert_array_equal(np.asarray(plain_metrics[key]),
                                      np.asarray(shapo_metrics[key]), err_msg=key)
    np.testing.assert_array_equal(np.asarray(shapo_metrics["shapo_kl"]), 0.0)
    np.testing.assert_array_equal(np.asarray(shapo_metrics["shapo_predicted_kl"]), 0.0)
    # Not vacuous: the runs trained, the multiplier moved and both critics' losses are used.
    assert float(np.asarray(plain_metrics["policy_kl"]).min()) > 0
    lam = np.asarray(plain_metrics["lagrange_multiplier"])
    assert np.all(lam > 0) and len(np.unique(lam)) == UPDATES


def test_shapo_ppo_with_positive_radius_differs_and_reports_sane_diagnostics():
    """On a hazard of radius 1.5, which about half the starts lie in: with the default radius
    the point's first random walks met the hazard in no batch of the three updates on 4 of 6
    fresh draws, and the costly samples' diagnostics went unchecked."""
    seed, wide = fresh_seed(), (("hazard_radius", 1.5),)  # one key for both runs
    plain, _ = train("ppo_lag", seed, env_options=wide)
    shapo, metrics = train("shapo_ppo_lag", seed, delta_down=DELTA, rho_critic=0.01,
                           env_options=wide)
    for params in ("actor_params", "critic_params"):
        a, b = (jax.tree_util.tree_leaves(getattr(s.learner, params)) for s in (plain, shapo))
        changed = [not np.array_equal(np.asarray(x), np.asarray(y))
                   for x, y in zip(a, b, strict=True)]
        assert any(changed), params
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    np.testing.assert_array_equal(metrics["shapo_radius"], np.float32(DELTA))
    # 1/2 eps^T F eps: delta_down exactly for F + damping, a little less for F itself.
    predicted = metrics["shapo_predicted_kl"]
    assert np.all(predicted <= DELTA * (1 + 1e-4)) and np.all(predicted > 0.3 * DELTA), predicted
    # The true mean KL to the perturbed policy matches the quadratic model.
    np.testing.assert_allclose(metrics["shapo_kl"], predicted, rtol=0.5)
    # The perturbation is pessimistic: the surrogate drops at theta + epsilon.
    assert np.all(metrics["shapo_objective_drop"] > 0), metrics["shapo_objective_drop"]
    for key in ("shapo_weight_safe", "shapo_g_dot_x", "shapo_cg_residual", "policy_kl",
                "actor_objective"):
        assert np.all(np.isfinite(metrics[key])), (key, metrics[key])
    assert np.all(metrics["shapo_g_dot_x"] > 0)
    # The mean weight over costly samples is undefined (NaN) exactly for a batch without any.
    costly = metrics["shapo_weight_costly"]
    np.testing.assert_array_equal(np.isnan(costly), metrics["cost_rate"] == 0)
    assert np.isfinite(costly).any(), "no batch with a costly sample: nothing was checked"
    # Reweighting w = pi_(theta+eps) / pi_theta averages near 1 for a KL of 0.02.
    weights = np.concatenate([metrics["shapo_weight_safe"], costly[np.isfinite(costly)]])
    assert np.all(np.abs(weights - 1.0) < 0.5), weights
    # The geometric means: undefined exactly where the arithmetic ones are, never above them
    # (per minibatch, so also in PPO's mean over minibatch steps), and near 1.
    for group in ("costly", "safe"):
        arithmetic = metrics[f"shapo_weight_{group}"]
        geometric = metrics[f"shapo_geometric_weight_{group}"]
        np.testing.assert_array_equal(np.isnan(geometric), np.isnan(arithmetic))
        finite = np.isfinite(geometric)
        assert np.all(geometric[finite] <= arithmetic[finite] * (1 + 1e-5)), group
        assert np.all(np.abs(geometric[finite] - 1.0) < 0.5), (group, geometric)
    assert np.all(metrics["shapo_kl_max"] >= metrics["shapo_kl"]), metrics["shapo_kl_max"]


# ----- vmap over seeds and hyper-parameters is separate runs ----------------------------


def test_vmap_over_seeds_and_hyperparameters_equals_separate_runs():
    trainer, init, _ = jitted("shapo_ppo_lag", delta_down=0.0, rho_critic=0.0)
    seed = fresh_seed()
    members = [(seed, 0.0, 0.0), (seed + 1, DELTA, 0.01)]  # (seed, delta_down, rho_critic)
    vmapped_init = jax.jit(jax.vmap(trainer.init))
    vmapped_run = jax.jit(jax.vmap(lambda s, hp: trainer.run(s, UPDATES, hp)))

    def run_members(chosen):
        keys = jnp.stack([jax.random.PRNGKey(seed) for seed, _, _ in chosen])
        hps = stack_hyperparameters([hyperparameters(trainer.config, d, r) for _, d, r in chosen])
        initial = vmapped_init(keys, hps)
        return initial, *vmapped_run(initial, hps)

    initial, states, metrics = run_members(members)
    assert np.asarray(metrics["shapo_radius"]).shape == (2, UPDATES)

    for index, (seed, delta_down, rho_critic) in enumerate(members):
        member = functools.partial(jax.tree_util.tree_map, lambda x, i=index: x[i])
        first = functools.partial(jax.tree_util.tree_map, lambda x: x[0])
        hp = hyperparameters(trainer.config, delta_down, rho_critic)
        # Initialisation is the same bit for bit (networks are initialised one at a time).
        assert_trees_equal(init(jax.random.PRNGKey(seed), hp), member(initial))
        # The member trained beside the other equals the member trained beside a copy of
        # itself, bit for bit: nothing of one member reaches another. (Against an unbatched
        # run the batched matrix products round differently, and Adam turns the rounding of
        # near-zero gradients into whole steps, so that comparison can only be approximate.)
        _, alone, alone_metrics = run_members([members[index]] * 2)
        assert_trees_equal(first(alone), member(states))
        for key, value in alone_metrics.items():
            np.testing.assert_array_equal(np.asarray(metrics[key])[index],
                                          np.asarray(value)[0], err_msg=key)
        # And it is the run of its own settings: the unbatched run agrees on the first update.
        _, single_metrics = train("shapo_ppo_lag", seed, delta_down, rho_critic)
        # (rtol 1e-3: the objective is a mean of terms that nearly cancel, and the batched
        # products round differently on different CPUs; the members differ by far more.)
        np.testing.assert_allclose(np.asarray(metrics["actor_objective"])[index, 0],
                                   np.asarray(single_metrics["actor_objective"])[0], rtol=1e-3)
    # The members really are different runs, already in the first update's objective.
    # The members are two runs, not one: their objectives differ over the updates (a single
    # update's pair can land within 1% of each other by chance).
    assert not np.allclose(*np.asarray(metrics["actor_objective"]), rtol=1e-2)
    assert not np.allclose(*np.asarray(metrics["episode_return"]))
    assert not np.allclose(*np.asarray(metrics["shapo_kl"]))


# ----- it learns the tiny safe task within the cost limit --------------------------------


@pytest.mark.parametrize("algo", ["ppo_lag", "shapo_ppo_lag"])
def test_ppo_lag_learns_tiny_task_with_cost_held_near_limit(algo):
    """Over 4 fresh seeds, the late training cost stays near the limit and the return well
    above random (`assert_learns_with_cost_held_near_limit`). Measured on 8 seeds x 60 updates
    of 128 envs: late cost 1.5 (PPO-Lag, 2.8 at most on a seed) and 1.3 (SHAPO-PPO-Lag, 2.2 at
    most) against the limit 2, return 4.8 and 4.3 (2.3 on the lowest seed); at 256 envs, 2.0
    and 0.7, return about 5, at twice the test's time."""
    env = envs.make("TinyHazardNav")
    # Lockstep: the 50-step episodes then fill each 50-step rollout whole. With random starts
    # every rollout cuts episodes in two and the hazard's cost reaches earlier steps only
    # through the cost critic. The multiplier's rate is raised from the default 0.035 so that
    # it settles within the budget: at 0.035 and 30 updates it was still rising and 5 of 8
    # seeds ended above the limit.
    config = TrainConfig(env="TinyHazardNav", algo=algo, num_envs=128, rollout_length=50,
                         cost_limit=2.0, lagrange_lr=0.1, random_episode_start=False)
    # 60 updates: 384k steps a seed
    assert_learns_with_cost_held_near_limit(make_train(config, env), env, updates=60)


@pytest.mark.parametrize("schedule", ["quantile_total", "quantile_batch"])
def test_quantile_schedules_give_the_closed_form_radius(schedule):
    """Proposition 5: delta_down = scale * z_alpha^2 / (2 n), n the samples seen so far
    (quantile_total) or the batch's samples (quantile_batch); checked against SciPy's z."""
    from scipy.stats import norm

    rng = fresh_rng()
    alpha, scale = float(rng.uniform(0.02, 0.3)), float(rng.uniform(0.5, 2.0))
    trainer, init, run = jitted("shapo_ppo_lag", delta_schedule=schedule, pessimism_alpha=alpha)
    hp = hyperparameters(trainer.config, scale, 0.0)
    _, metrics = run(init(jax.random.PRNGKey(int(rng.integers(1 << 30))), hp), hp)
    batch = trainer.config.batch_size
    samples = batch * np.arange(1, UPDATES + 1) if schedule == "quantile_total" else batch
    expected = scale * norm.ppf(alpha) ** 2 / (2.0 * samples) * np.ones(UPDATES)
    np.testing.assert_allclose(np.asarray(metrics["shapo_radius"]), expected, rtol=1e-5)


# ----- the advantages' scales ------------------------------------------------------------


def test_advantage_scales_are_the_stds_of_the_batch_gae_before_standardisation():
    """reward_advantage_std and cost_advantage_std, against a NumPy GAE (test_advantages) of
    the same rollout, replayed from the state's key with the state's critics and statistics."""
    from test_advantages import numpy_gae

    from shapo_jax.rollout import normalize, rollout

    rng = fresh_rng()
    # a hazard wide enough that the first batch's random walks touch it
    config = TrainConfig(**SMALL, algo="ppo_lag", env_options={"hazard_radius": 1.5})
    env = config.make_env()
    trainer = make_train(config, env)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(int(rng.integers(1 << 30))))
    _, metrics = jax.jit(trainer.update)(state)
    _, rollout_key, _ = jax.random.split(state.key, 3)
    traj = jax.jit(lambda s, k: rollout(env, trainer.policy(s), s.env_state, s.tracker, k,
                                        config.rollout_length, config.action_repeat)[2])(
        state, rollout_key)
    critic, params = trainer.networks.critic, state.learner.critic_params
    for signal, gamma, lam in (("reward", config.gamma, config.gae_lambda),
                               ("cost", config.cost_gamma, config.cost_gae_lambda)):
        values, next_values = (np.asarray(critic.apply(params[signal], normalize(
            state.obs_stats, obs))) for obs in (traj.obs, traj.next_obs))
        advantages, _ = numpy_gae(getattr(traj, signal), values, next_values, traj.terminated,
                                  traj.done, gamma, lam)
        assert advantages.std() > 0
        np.testing.assert_allclose(float(metrics[f"{signal}_advantage_std"]), advantages.std(),
                                   rtol=1e-4, err_msg=signal)
    assert float(np.asarray(traj.cost).sum()) > 0  # the cost advantage saw costs


def test_the_learners_batch_is_the_replayed_rollouts_lagrangian_batch():
    """What `Trainer.update` hands its learner (swapped for one that hands the batch back, as
    study/shapo_gradient_noise.py does), against NumPy on the same rollout replayed:
    A_lag = (z(A_r) - lambda' (A_c - mean A_c)) / (1 + lambda') with the GAE of
    test_advantages and lambda' one projected Adam step (test_lagrange) on the rate estimate
    cost_rate x episode length, the targets A + V, pi_old's log-density of each action from
    SciPy, and the flat time-major layout of the batch."""
    import dataclasses

    from scipy.stats import norm
    from test_advantages import numpy_gae
    from test_lagrange import numpy_projected_adam

    from shapo_jax.rollout import normalize, rollout
    from shapo_jax.update import UpdateBatch

    rng = fresh_rng()
    config = TrainConfig(**{**SMALL, "lagrange_init": float(rng.uniform(0.1, 2.0))},
                         algo="ppo_lag", cost_estimator="rate",
                         env_options={"hazard_radius": 1.5})
    env = config.make_env()
    fields = [f.name for f in dataclasses.fields(UpdateBatch)]

    def hand_back(learner, batch, key, hp):
        return learner, {f"batch.{name}": getattr(batch, name) for name in fields}

    trainer = dataclasses.replace(make_train(config, env), policy_update=hand_back)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(int(rng.integers(1 << 30))))
    _, metrics = jax.jit(trainer.update)(state)
    batch = {name: np.asarray(metrics[f"batch.{name}"], np.float64) for name in fields}

    _, rollout_key, _ = jax.random.split(state.key, 3)
    traj = jax.jit(lambda s, k: rollout(env, trainer.policy(s), s.env_state, s.tracker, k,
                                        config.rollout_length, config.action_repeat)[2])(
        state, rollout_key)
    obs, next_obs = (np.asarray(normalize(state.obs_stats, x), np.float64)
                     for x in (traj.obs, traj.next_obs))
    critic, params = trainer.networks.critic, state.learner.critic_params
    gae = {}
    for signal, gamma, lam in (("reward", config.gamma, config.gae_lambda),
                               ("cost", config.cost_gamma, config.cost_gae_lambda)):
        values, next_values = (np.asarray(critic.apply(params[signal], x.astype(np.float32)))
                               for x in (obs, next_obs))
        gae[signal] = numpy_gae(getattr(traj, signal), values, next_values, traj.terminated,
                                traj.done, gamma, lam)
    cost = np.asarray(traj.cost, np.float64)
    assert cost.sum() > 0, "the rollout met no cost: the cost terms are not exercised"
    estimate = cost.mean() / config.action_repeat * env.episode_length
    multiplier = numpy_projected_adam(config.lagrange_init, config.lagrange_lr, [estimate],
                                      config.cost_limit)[0]
    reward_adv, cost_adv = gae["reward"][0].reshape(-1), gae["cost"][0].reshape(-1)
    z_reward = (reward_adv - reward_adv.mean()) / (reward_adv.std() + 1e-8)
    advantage = (z_reward - multiplier * (cost_adv - cost_adv.mean())) / (1 + multiplier)
    mean, log_std = (np.asarray(x, np.float64) for x in trainer.networks.actor.apply(
        state.learner.actor_params, obs.astype(np.float32)))
    action = np.asarray(traj.action, np.float64)
    old_log_prob = norm.logpdf(action, mean, np.exp(log_std)).sum(-1)

    close = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(metrics["episode_cost_estimate"]), estimate, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["lagrange_multiplier"]), multiplier, rtol=1e-5)
    np.testing.assert_allclose(batch["advantage"], advantage, **close)
    np.testing.assert_allclose(batch["reward_target"], gae["reward"][1].reshape(-1), **close)
    np.testing.assert_allclose(batch["cost_target"], gae["cost"][1].reshape(-1), **close)
    np.testing.assert_allclose(batch["old_log_prob"], old_log_prob.reshape(-1), **close)
    np.testing.assert_allclose(batch["obs"], obs.reshape(batch["obs"].shape), **close)
    np.testing.assert_array_equal(batch["action"], action.reshape(batch["action"].shape))
    np.testing.assert_array_equal(batch["cost"], cost.reshape(-1))
