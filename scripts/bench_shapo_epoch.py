"""What one PPO epoch costs with and without SHAPO at a preset's minibatches.

    .venv/bin/python scripts/bench_shapo_epoch.py --preset omnisafe --num-envs 1024 \
        --rollout-length 20

One epoch of the policy update (`Trainer.policy_update` with update_epochs=1 and no KL stop:
every minibatch step of the batch) on a random batch of the task's shapes, with `--members`
seeds vmapped as in the 10M study, for PPO-Lag, SHAPO-PPO-Lag, and SHAPO-PPO-Lag with one CG
iteration (what the remaining nine cost) and with the Fisher on the whole minibatch. Each
setting is compiled once and timed in interleaved rounds (the best call of each round), so
that a busy machine slows all settings alike.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import envs
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.training.presets import preset_overrides
from shapo_jax.update.learner import UpdateBatch
from shapo_jax.update.settings import UpdateHyperparameters

SETTINGS = [
    ("ppo_lag", "ppo_lag", {}),
    ("shapo_ppo_lag", "shapo_ppo_lag", {}),
    ("shapo_ppo_lag, cg_iters 1", "shapo_ppo_lag", {"shapo_cg_iters": 1}),
    ("shapo_ppo_lag, fisher_fraction 1", "shapo_ppo_lag", {"fisher_fraction": 1.0}),
]


def random_batch(key: jax.Array, members: int, size: int, obs_size: int,
                 action_size: int) -> UpdateBatch:
    keys = jax.random.split(key, 3)
    obs = jax.random.normal(keys[0], (members, size, obs_size))
    return UpdateBatch(
        obs=obs, action=0.5 * jax.random.normal(keys[1], (members, size, action_size)),
        old_log_prob=jnp.full((members, size), -2.0),
        advantage=jax.random.normal(keys[2], (members, size)), reward_target=obs[..., 0],
        cost_target=obs[..., 1], cost=(obs[..., 2] > 1.5).astype(jnp.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--preset", default="omnisafe")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--rollout-length", type=int, default=20)
    parser.add_argument("--members", type=int, default=2, help="vmapped seeds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = envs.make(args.env)
    programs = {}
    for name, algo, overrides in SETTINGS:
        config = TrainConfig.from_dict({
            **preset_overrides(args.preset, algo), "env": args.env, "algo": algo,
            "num_envs": args.num_envs, "rollout_length": args.rollout_length,
            "target_kl": None, "update_epochs": 1, **overrides})
        trainer = make_train(config, env)
        keys = jax.random.split(jax.random.PRNGKey(0), args.members)
        learners = jax.vmap(lambda k, t=trainer: t.init(k).learner)(keys)
        batch = random_batch(jax.random.PRNGKey(1), args.members, config.batch_size,
                             env.observation_size, env.action_size)
        hp = UpdateHyperparameters(shapo_radius=jnp.float32(0.005),
                                   critic_radius=jnp.float32(0.01))
        update = jax.jit(jax.vmap(lambda lr, b, k, t=trainer, hp=hp: t.policy_update(lr, b, k, hp)))
        jax.block_until_ready(update(learners, batch, keys))  # compile
        programs[name] = (update, (learners, batch, keys), config)
    best: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(args.rounds):
        for name, (update, inputs, _) in programs.items():
            times = []
            for _ in range(3):
                start = time.perf_counter()
                jax.block_until_ready(update(*inputs))
                times.append(time.perf_counter() - start)
            best[name].append(min(times))
    config = next(iter(programs.values()))[2]
    print(f"{args.env}, preset {args.preset}: one epoch of {config.num_minibatches} minibatches "
          f"of {config.minibatch_size}, {args.members} vmapped members; ms per epoch by round")
    base = min(best["ppo_lag"])
    for name, times in best.items():
        print(f"  {name:34s} {', '.join(f'{1e3 * t:7.1f}' for t in times)}"
              f"   ({min(times) / base:.2f}x ppo_lag)")


if __name__ == "__main__":
    main()
