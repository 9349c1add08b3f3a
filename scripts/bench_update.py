"""Benchmark one training update (rollout + policy/critic update) of each algorithm.

    .venv/bin/python scripts/bench_update.py --envs TinyHazardNav SafetyPointGoal1 \\
        --num-envs 1024 --rollout-length 32

For every environment and algorithm (ppo_lag, shapo_ppo_lag, trpo_lag, shapo_trpo_lag):
  compile_s   compiling the jitted `Trainer.run` program (a scan of `--updates` updates);
  sps         environment steps per second of training (rollout + update), timed over
              `--updates` updates after a warm-up call;
  step_ms     one whole update (rollout, advantages, multiplier, policy and critic update);
  update_ms   the policy and critic update alone (no rollout), on a batch of the same shape
              (random observations, actions drawn from the policy, random advantages);
  env_sps     the raw environment step rate of the same batch: the same `rollout` (auto-reset,
              episode bookkeeping) with uniformly random actions and no learning, so
              sps / env_sps is the share of the time the environments get.
Environments not registered (yet) are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

import envs
from shapo_jax.policy import gaussian_log_prob
from shapo_jax.rollout import init_tracker, reset_batch, rollout
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.training.config import ALGORITHMS
from shapo_jax.update import UpdateHyperparameters
from shapo_jax.update.learner import UpdateBatch


def timed(fn, *args, repeats: int = 1) -> float:
    """Seconds per call of an already compiled `fn`, after one warm-up call."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def synthetic_batch(trainer, state, key: jax.Array) -> UpdateBatch:
    cfg, env = trainer.config, trainer.env
    keys = jax.random.split(key, 4)
    obs = jax.random.normal(keys[0], (cfg.batch_size, env.observation_size))
    mean, log_std = trainer.networks.actor.apply(state.learner.actor_params, obs)
    action = mean + jnp.exp(log_std) * jax.random.normal(keys[1], mean.shape)
    noise = jax.random.normal(keys[2], (3, cfg.batch_size))
    return UpdateBatch(
        obs=obs, action=action, old_log_prob=gaussian_log_prob(mean, log_std, action),
        advantage=noise[0], reward_target=noise[1], cost_target=noise[2],
        cost=(jax.random.uniform(keys[3], (cfg.batch_size,)) < 0.05).astype(jnp.float32),
    )


def raw_env_sps(env, num_envs: int, rollout_length: int, repeats: int) -> float:
    """Environment steps per second of `rollout` with uniformly random actions."""

    def random_policy(obs, key):
        action = jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1, maxval=1)
        return action, jnp.zeros(obs.shape[0])

    @jax.jit
    def collect(env_state, tracker, key):
        env_state, tracker, traj = rollout(
            env, random_policy, env_state, tracker, key, rollout_length
        )
        return env_state, tracker, traj.reward.sum()

    env_state = reset_batch(env, jax.random.PRNGKey(0), num_envs)
    seconds = timed(collect, env_state, init_tracker(num_envs), jax.random.PRNGKey(1),
                    repeats=repeats)
    return num_envs * rollout_length / seconds


def bench(env_name: str, algo: str, args: argparse.Namespace) -> dict[str, float]:
    config = TrainConfig(env=env_name, algo=algo, num_envs=args.num_envs,
                         rollout_length=args.rollout_length)
    trainer = make_train(config, envs.make(env_name, **args.env_kwargs))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))

    start = time.perf_counter()
    run = jax.jit(lambda s: trainer.run(s, args.updates)).lower(state).compile()
    compile_s = time.perf_counter() - start
    run_s = timed(run, state, repeats=args.repeats)

    hp = config.hyperparameters()
    batch = synthetic_batch(trainer, state, jax.random.PRNGKey(1))
    radii = UpdateHyperparameters(shapo_radius=hp.delta_down, critic_radius=hp.rho_critic)
    policy_update = jax.jit(
        lambda learner, batch, key: trainer.policy_update(learner, batch, key, radii)
    )
    update_s = timed(policy_update, state.learner, batch, jax.random.PRNGKey(2),
                     repeats=3 * args.repeats)
    return {
        "compile_s": compile_s,
        "sps": config.env_steps_per_update * args.updates / run_s,
        "step_ms": 1e3 * run_s / args.updates,
        "update_ms": 1e3 * update_s,
    }



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["TinyHazardNav", "SafetyPointGoal1"])
    parser.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--rollout-length", type=int, default=32)
    parser.add_argument("--env-kwargs", type=json.loads, default={},
                        help='environment overrides as JSON, e.g. \'{"num_vases": 0}\'')
    parser.add_argument("--updates", type=int, default=3, help="updates per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs to average")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"jax {jax.__version__}, {len(jax.devices())} x {device.platform} "
          f"({device.device_kind}); {args.num_envs} envs x {args.rollout_length} steps "
          f"= {args.num_envs * args.rollout_length} steps per update")
    print("| env | algo | compile s | train env steps/s | step ms | update ms | raw env steps/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for env_name in args.envs:
        try:
            envs.make(env_name)
        except ValueError as error:
            print(f"| {env_name} | skipped: {error} ||||")
            continue
        env = envs.make(env_name, **args.env_kwargs)
        env_sps = raw_env_sps(env, args.num_envs, args.rollout_length, args.repeats)
        for algo in args.algos:
            r = bench(env_name, algo, args)
            print(f"| {env_name} | {algo} | {r['compile_s']:.1f} | {r['sps']:,.0f} | "
                  f"{r['step_ms']:.0f} | {r['update_ms']:.0f} | {env_sps:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
