"""(SHAPO-)TRPO-Lag update: trust region, line search, delta_down = 0, learning, devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    assert_learns_with_cost_held_near_limit,
    fresh_rng,
    fresh_seed,
    numpy_gaussian_kl,
)

import envs
from shapo_jax.policy import gaussian_log_prob
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.update import UpdateHyperparameters
from shapo_jax.update.learner import LearnerState, UpdateBatch, init_optimizer, make_optimizer
from shapo_jax.update.trpo import backtracking_line_search, line_search_fractions

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(env="TinyHazardNav", num_envs=64, rollout_length=50)


# ----- the trust region is never exceeded ---------------------------------------------

BIG_TRUST_REGION = 2.0  # far beyond where the quadratic model of the KL holds


@pytest.fixture(scope="module", params=["trpo_lag", "shapo_trpo_lag"])
def big_step_update(request):
    """A jitted (SHAPO-)TRPO update with a large trust region, its trainer and config."""
    config = TrainConfig(**TINY, algo=request.param, trust_region=BIG_TRUST_REGION,
                         trpo_cg_damping=0.01, delta_down=0.05, critic_epochs=1,
                         num_minibatches=4)
    trainer = make_train(config, envs.make("TinyHazardNav"))
    hp = config.hyperparameters()

    @jax.jit
    def update(learner, batch, key):
        radii = UpdateHyperparameters(shapo_radius=hp.delta_down, critic_radius=hp.rho_critic)
        return trainer.policy_update(learner, batch, key, radii)

    return config, trainer, update


def random_learner_and_batch(trainer, config, key):
    """Random actor/critics, random states, actions drawn from pi_old and random advantages."""
    keys = jax.random.split(key, 7)
    size, obs_dim = config.batch_size, trainer.env.observation_size
    obs = 1.5 * jax.random.normal(keys[0], (size, obs_dim))
    actor = trainer.networks.actor
    actor_params = actor.init(keys[1], obs[:1])
    # Larger random weights than the initialiser's: a policy that reacts strongly to the state.
    leaves, treedef = jax.tree_util.tree_flatten(actor_params)
    leaf_keys = jax.random.split(keys[2], len(leaves))
    actor_params = jax.tree_util.tree_unflatten(
        treedef,
        [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, leaf_keys, strict=True)],
    )
    mean, log_std = actor.apply(actor_params, obs)
    action = mean + jnp.exp(log_std) * jax.random.normal(keys[3], mean.shape)
    critic = trainer.networks.critic
    critic_params = {"reward": critic.init(keys[4], obs[:1]), "cost": critic.init(keys[5], obs[:1])}
    optimizer = make_optimizer(config.max_grad_norm)
    learner = LearnerState(
        actor_params=actor_params,
        critic_params=critic_params,
        actor_opt_state=init_optimizer(optimizer, actor_params, 3e-4),
        critic_opt_state=init_optimizer(optimizer, critic_params, 3e-4),
    )
    noise = jax.random.normal(keys[6], (4, size))
    cost = (noise[3] > 1.0).astype(jnp.float32)
    batch = UpdateBatch(
        obs=obs, action=action, old_log_prob=gaussian_log_prob(mean, log_std, action),
        advantage=noise[0], reward_target=noise[1], cost_target=noise[2], cost=cost,
    )
    return learner, batch


def test_accepted_step_stays_inside_trust_region(big_step_update):
    config, trainer, update = big_step_update
    actor = trainer.networks.actor
    fractions, backtracked = [], 0
    for _ in range(4):
        problem_key, update_key = jax.random.split(jax.random.PRNGKey(fresh_seed()))
        learner, batch = random_learner_and_batch(trainer, config, problem_key)
        new_learner, metrics = update(learner, batch, update_key)
        old_mean, old_log_std = actor.apply(learner.actor_params, batch.obs)
        new_mean, new_log_std = actor.apply(new_learner.actor_params, batch.obs)
        true_kl = numpy_gaussian_kl(old_mean, old_log_std, new_mean, new_log_std).mean()
        fraction = float(metrics["trpo_step_fraction"])
        fractions.append(fraction)
        assert fraction > 0, "no step accepted on a random batch: the test would be vacuous"
        assert true_kl <= BIG_TRUST_REGION * (1 + 1e-5)
        np.testing.assert_allclose(true_kl, float(metrics["trpo_kl"]), rtol=1e-3)
        # The surrogate improved, measured independently in float64.
        adv = np.asarray(batch.advantage, np.float64)
        new_log_prob = np.asarray(gaussian_log_prob(new_mean, new_log_std, batch.action))
        ratio = np.exp(new_log_prob.astype(np.float64) - np.asarray(batch.old_log_prob))
        assert np.mean(ratio * adv) > np.mean(adv) - 1e-6
        # Full steps of KL radius 2 overshoot: the line search had to back off.
        backtracked += fraction < 1.0
        # The actor's optimiser state is untouched; the critics moved.
        for a, b in zip(jax.tree_util.tree_leaves(learner.actor_opt_state),
                        jax.tree_util.tree_leaves(new_learner.actor_opt_state), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert any(
            not np.allclose(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree_util.tree_leaves(learner.critic_params),
                            jax.tree_util.tree_leaves(new_learner.critic_params), strict=True)
        )
    assert backtracked >= 2, f"the line search never backtracked: fractions {fractions}"


# ----- the vmapped line search is the sequential one ----------------------------------


def sequential_line_search(evaluate, baseline, fractions, max_kl):
    """Reference: try the fractions one by one in Python, stop at the first acceptable one."""
    for fraction in np.asarray(fractions):
        kl, objective = (float(v) for v in evaluate(jnp.float32(fraction)))
        improvement = objective - float(baseline)
        if np.isfinite(kl) and np.isfinite(improvement) and kl <= max_kl and improvement > 0:
            return float(fraction), kl, improvement
    return 0.0, 0.0, 0.0


def test_vmapped_line_search_matches_sequential_loop():
    rng = fresh_rng()
    fractions = line_search_fractions(0.7, 12)
    np.testing.assert_allclose(np.asarray(fractions), 0.7 ** np.arange(12), rtol=1e-6)
    search = jax.jit(backtracking_line_search, static_argnums=0)
    chosen = set()
    for trial in range(30):
        # A toy non-quadratic KL (with a NaN region) and a non-monotone objective.
        hess = rng.normal(size=(3, 3))
        hess = jnp.asarray(hess @ hess.T + 0.1 * np.eye(3), jnp.float32)
        step = jnp.asarray(rng.normal(size=3), jnp.float32)
        cubic, wiggle, slope = (jnp.float32(v) for v in rng.uniform(0, 2, size=3))
        nan_above = jnp.float32(rng.uniform(0.3, 1.5))

        def evaluate(fraction, hess=hess, step=step, cubic=cubic, wiggle=wiggle, slope=slope,
                     nan_above=nan_above):
            s = fraction * step
            kl = 0.5 * s @ hess @ s + cubic * fraction**3
            kl = jnp.where(fraction > nan_above, jnp.nan, kl)
            objective = slope * fraction - fraction**2 + wiggle * jnp.sin(9.0 * fraction)
            return kl, objective

        baseline = jnp.float32(rng.uniform(-0.2, 0.2) if trial % 6 else 10.0)  # 10: hopeless
        max_kl = float(rng.uniform(0.05, 1.0))
        result = search(evaluate, baseline, fractions, max_kl)
        expected = sequential_line_search(evaluate, baseline, fractions, max_kl)
        np.testing.assert_allclose(
            [float(result.fraction), float(result.kl), float(result.improvement)], expected,
            rtol=1e-5, atol=1e-7,
        )
        assert bool(result.accepted) == (expected[0] > 0)
        chosen.add(expected[0])
    # The random problems exercised several outcomes, including rejecting every candidate.
    assert 0.0 in chosen and len(chosen) >= 4, chosen


# ----- delta_down = 0: SHAPO-TRPO-Lag is TRPO-Lag -------------------------------------


def test_shapo_trpo_with_zero_delta_is_trpo():
    """At radius 0 epsilon is exactly zero and g_tilde is g. From the same state, update by
    update, everything but the actor is bit for bit TRPO-Lag's, the actor to float32 rounding:
    with SHAPO's solve on the same Fisher in its program, XLA compiles the natural step's CG
    differently (on 3 of 17 fresh draws the two runs' actors parted by 1 ulp, up to 1.5e-8,
    at the third update; an optimisation barrier around the natural step does not stop it)."""
    env = envs.make("TinyHazardNav")
    updates = {}
    for algo in ("trpo_lag", "shapo_trpo_lag"):
        config = TrainConfig(**TINY, algo=algo, delta_down=0.0, rho_critic=0.0, critic_epochs=2,
                             num_minibatches=4, cost_limit=2.0)
        trainer = make_train(config, env)
        updates[algo] = jax.jit(trainer.update)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(fresh_seed()))
    for _ in range(3):
        plain, plain_metrics = updates["trpo_lag"](state)
        shapo, shapo_metrics = updates["shapo_trpo_lag"](state)
        assert float(shapo_metrics["shapo_kl"]) == 0.0
        assert float(shapo_metrics["shapo_predicted_kl"]) == 0.0
        assert float(plain_metrics["trpo_step_fraction"]) > 0
        moved = 0.0
        for (path, a), b, before in zip(jax.tree_util.tree_leaves_with_path(plain),
                                        jax.tree_util.tree_leaves(shapo),
                                        jax.tree_util.tree_leaves(state), strict=True):
            a, b = np.asarray(a), np.asarray(b)
            if "actor_params" in jax.tree_util.keystr(path):
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
                moved = max(moved, float(np.abs(a - np.asarray(before)).max()))
            else:
                np.testing.assert_array_equal(b, a)
        assert moved > 1e-4  # the actor took a step (so the bound above is not vacuous)
        state = plain


# ----- it learns the tiny safe task ---------------------------------------------------


@pytest.mark.parametrize("algo", ["trpo_lag", "shapo_trpo_lag"])
def test_trpo_lag_learns_tiny_task_with_cost_held_near_limit(algo):
    """As test_training's learning test, over 4 fresh seeds. Measured on 8 seeds x 100
    updates: late cost 1.9 (TRPO-Lag) and 1.5 (SHAPO-TRPO-Lag) against the limit 2; return
    4.9 and 2.0. SHAPO-TRPO-Lag learns more slowly here: its radius (0.005) is half the trust
    region, and its return was still rising at the end (0.6 after 10 updates, 2.4 after 100)."""
    env = envs.make("TinyHazardNav")
    assert env.episode_length == 50
    # Lockstep and a faster multiplier, as in test_training's learning test; 128 envs, as at 64
    # one TRPO-Lag seed in 8 stayed at the start (return 0.6).
    config = TrainConfig(**{**TINY, "num_envs": 128}, algo=algo, cost_limit=2.0, lagrange_lr=0.1,
                         random_episode_start=False)
    # 100 updates: 640k steps a seed
    assert_learns_with_cost_held_near_limit(make_train(config, env), env, updates=100)


# ----- 1 device and 4 devices compute the same run ------------------------------------

DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import envs
    from shapo_jax.training import TrainConfig, make_train
    from shapo_jax.training.devices import check_divisible, make_mesh, state_sharding

    config = TrainConfig(env="TinyHazardNav", num_envs=64, rollout_length=50, algo="trpo_lag",
                         critic_epochs=2, num_minibatches=4, cost_limit=2.0)
    trainer = make_train(config, envs.make("TinyHazardNav"))
    mesh = make_mesh()
    check_divisible(config.num_envs, mesh)
    key = jax.random.PRNGKey(5)
    shardings = state_sharding(jax.eval_shape(trainer.init, key), mesh)
    state = jax.jit(trainer.init, out_shardings=shardings)(key)
    run = jax.jit(lambda s: trainer.run(s, 3), in_shardings=(shardings,),
                  out_shardings=(shardings, None))
    state, metrics = run(state)
    leaves = [np.asarray(x).ravel().tolist() for x in jax.tree_util.tree_leaves(state.learner)]
    out = {"devices": len(jax.devices()), "leaves": leaves,
           "fraction": np.asarray(metrics["trpo_step_fraction"]).tolist()}
    print("RESULT" + json.dumps(out))
    """
)


def run_on_devices(count: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_trpo_lag_one_and_four_devices_agree():
    one, four = run_on_devices(1), run_on_devices(4)
    assert (one["devices"], four["devices"]) == (1, 4)
    assert one["fraction"] == four["fraction"] and min(one["fraction"]) > 0
    # Sums split over devices round differently and three CG solves amplify the rounding: the
    # runs agree to float32 rounding (within 5e-3 of each leaf's scale; 2.3e-3 at most with
    # the packages of 2026-12-08, under 2e-3 before), not bit for bit.
    for a, b in zip(one["leaves"], four["leaves"], strict=True):
        a, b = np.asarray(a), np.asarray(b)
        scale = max(float(np.abs(a).max()), 1e-6)
        assert np.abs(a - b).max() <= 5e-3 * scale, (np.abs(a - b).max(), scale)
