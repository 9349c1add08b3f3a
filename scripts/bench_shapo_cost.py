"""Where SHAPO-PPO-Lag's extra time goes, and what the Fisher subsample buys.

    .venv/bin/python scripts/bench_shapo_cost.py

1. Parts of one minibatch step (4,096 samples, TinyHazardNav's networks), each jitted and
   timed over 20 calls: the plain policy gradient, the SHAPO gradient (perturbation and the
   gradient at theta + epsilon), the 10-iteration CG on a quarter of the minibatch, one
   Gauss-Newton Fisher product on 1,024 samples, and the critic step without and with SAM.
2. Training throughput of shapo_ppo_lag (1024 envs x 32 steps) for several
   (fisher_fraction, cg_iters) settings.
3. Accuracy of epsilon for the same settings: cosine to the solution with the Fisher of the
   whole minibatch and 50 CG iterations (random initialisations and advantages).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

import envs
from shapo_jax.policy import gaussian_log_prob
from shapo_jax.sharpness import (
    conjugate_gradient,
    gaussian_fisher_vector_product,
    shapo_perturbation,
)
from shapo_jax.sharpness.tree_math import tree_vdot
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.update.critic import critic_step
from shapo_jax.update.learner import UpdateBatch, make_optimizer
from shapo_jax.update.ppo import ppo_objective
from shapo_jax.update.shapo_step import fisher_subsample, policy_fisher_product, policy_gradient

SETTINGS = [(0.25, 10), (0.1, 10), (0.1, 5), (1.0, 10)]


def milliseconds(fn, *args, repeats: int = 20) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return 1e3 * (time.perf_counter() - start) / repeats


def random_batch(trainer, actor_params, key: jax.Array, size: int) -> UpdateBatch:
    keys = jax.random.split(key, 3)
    obs = 2.0 * jax.random.normal(keys[0], (size, trainer.env.observation_size))
    mean, log_std = trainer.networks.actor.apply(actor_params, obs)
    action = mean + jnp.exp(log_std) * jax.random.normal(keys[1], mean.shape)
    return UpdateBatch(
        obs=obs, action=action, old_log_prob=gaussian_log_prob(mean, log_std, action),
        advantage=jax.random.normal(keys[2], (size,)), reward_target=obs[:, 0],
        cost_target=obs[:, 1], cost=(obs[:, 2] > 1.5).astype(jnp.float32),
    )


def main() -> None:
    env = envs.make("TinyHazardNav")
    config = TrainConfig(env="TinyHazardNav", algo="shapo_ppo_lag", num_envs=1024,
                         rollout_length=32)
    trainer = make_train(config, env)
    state = trainer.init(jax.random.PRNGKey(0))
    params, networks = state.learner.actor_params, trainer.networks
    batch = random_batch(trainer, params, jax.random.PRNGKey(1), config.minibatch_size)
    objective = lambda p, b: ppo_objective(p, networks, b, config.clip, 0.0)[0]  # noqa: E731
    grad = jax.grad(objective)(params, batch)

    def cg(p, g, obs):
        fvp = gaussian_fisher_vector_product(lambda q: networks.actor.apply(q, obs), p)
        return conjugate_gradient(fvp, g, iters=10, damping=config.shapo_cg_damping)

    def one_product(p, g, obs):
        return gaussian_fisher_vector_product(lambda q: networks.actor.apply(q, obs), p)(g)

    optimizer = make_optimizer(config.max_grad_norm)
    critic = state.learner.critic_params, state.learner.critic_opt_state
    quarter = fisher_subsample(batch.obs, 0.25)
    shapo = config.shapo_settings()

    def shapo_gradient(p, b):
        def fisher():
            obs = fisher_subsample(b.obs, shapo.fisher_fraction)
            return policy_fisher_product(networks, p, obs)

        return policy_gradient(lambda q: ppo_objective(q, networks, b, config.clip, 0.0), p,
                               shapo, jnp.float32(config.delta_down), fisher, b.cost).ascent

    print(f"1. one minibatch step ({config.minibatch_size} samples), ms per call")
    for name, fn, args in [
        ("plain policy gradient", jax.grad(objective), (params, batch)),
        ("SHAPO policy gradient", shapo_gradient, (params, batch)),
        ("CG, 10 iterations, Fisher on 1/4", cg, (params, grad, quarter)),
        ("one Fisher product on 1/4", one_product, (params, grad, quarter)),
        ("critic step", lambda c, o, b: critic_step(
            c, o, optimizer, networks, b, jnp.float32(0.0), False)[0], (*critic, batch)),
        ("critic step with SAM", lambda c, o, b: critic_step(
            c, o, optimizer, networks, b, jnp.float32(config.rho_critic), True)[0],
         (*critic, batch)),
    ]:
        print(f"   {name:34s} {milliseconds(fn, *args):7.2f}")

    print("2./3. fisher_fraction, cg_iters -> training env steps/s; cosine of epsilon")
    for fraction, iters in SETTINGS:
        cfg = TrainConfig(env="TinyHazardNav", algo="shapo_ppo_lag", num_envs=1024,
                          rollout_length=32, fisher_fraction=fraction, shapo_cg_iters=iters)
        t = make_train(cfg, env)
        s = jax.jit(t.init)(jax.random.PRNGKey(0))
        run = jax.jit(t.run, static_argnums=1)
        s, _ = run(s, 3)
        jax.block_until_ready(s)
        start = time.perf_counter()
        s, _ = run(s, 3)
        jax.block_until_ready(s)
        sps = 3 * cfg.batch_size / (time.perf_counter() - start)
        cosines = []
        for seed in range(3):
            p = t.init(jax.random.PRNGKey(seed)).learner.actor_params
            b = random_batch(t, p, jax.random.PRNGKey(100 + seed), 1024)
            g = jax.grad(objective)(p, b)

            def epsilon(obs, iters, p=p, g=g, cfg=cfg):
                fvp = gaussian_fisher_vector_product(lambda q: networks.actor.apply(q, obs), p)
                return shapo_perturbation(None, None, p, cfg.delta_down, cg_iters=iters,
                                          damping=cfg.shapo_cg_damping, fisher_product=fvp, grad=g)

            reference = epsilon(b.obs, 50)
            approx = epsilon(fisher_subsample(b.obs, fraction), iters)
            cosines.append(float(tree_vdot(approx, reference) / jnp.sqrt(
                tree_vdot(approx, approx) * tree_vdot(reference, reference))))
        print(f"   fraction {fraction:4.2f}, cg_iters {iters:2d}: {sps:9,.0f} env steps/s; "
              f"cosine {min(cosines):.3f}-{max(cosines):.3f}", flush=True)


if __name__ == "__main__":
    main()
