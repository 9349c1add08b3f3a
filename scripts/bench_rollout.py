"""What resets cost the trainer's rollout, lockstep against desynchronised episodes.

Steps `--rollouts` consecutive rollouts of `--rollout-length` steps (default 32 x 32 = 1024
steps: one full 1000-step episode per env, so every configuration meets the same number of
episode ends) with random actions, for four configurations side by side in one process:

    lockstep, reset on the step    all envs start at step 0 (0.1's rollout): a whole-batch
                                   reset on the one step per episode where they all finish
    random start, reset on the step  every env at a random point of its episode: some env
                                   finishes on almost every step, each paying a whole reset
    random start, reset pool       the default: one batch of fresh states per rollout
    lockstep, reset pool           the pool where lockstep would not need it

and prints env steps/s and each one's ratio to the first. The env batch is sharded over all
devices (`--cpu-devices N` on a CPU).

    .venv/bin/python scripts/bench_rollout.py --env SafetyPointGoal1 --num-envs 256 \\
        --cpu-devices 2
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

import envs
from shapo_jax.rollout import desynchronize_episodes, init_tracker, reset_batch, rollout
from shapo_jax.training.devices import use_cpu_devices

CONFIGURATIONS = (  # (name, random start, reset pool)
    ("lockstep, reset on the step", False, False),
    ("random start, reset on the step", True, False),
    ("random start, reset pool", True, True),
    ("lockstep, reset pool", False, True),
)


def measure(env, num_envs: int, rollout_length: int, rollouts: int, random_start: bool,
            reset_pool: bool, sharding) -> float:
    """Env steps per second over `rollouts` consecutive rollouts (compiled beforehand)."""

    def random_actions(obs, key):
        action = jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1, maxval=1)
        return action, jnp.zeros(obs.shape[0])

    def initial(key):
        state = reset_batch(env, key, num_envs)
        if random_start:
            state, _ = desynchronize_episodes(state, jax.random.fold_in(key, 1),
                                              env.episode_length)
        return state, init_tracker(num_envs)

    def collect(state, tracker, key):
        state, tracker, traj = rollout(env, random_actions, state, tracker, key,
                                       rollout_length, reset_pool=reset_pool)
        return state, tracker, traj.done.sum()

    state, tracker = jax.jit(initial, out_shardings=sharding)(jax.random.PRNGKey(0))
    step = jax.jit(collect, in_shardings=(*sharding, None),
                   out_shardings=(*sharding, None), donate_argnums=(0, 1))
    step = step.lower(state, tracker, jax.random.PRNGKey(1)).compile()
    start = time.perf_counter()
    for index in range(rollouts):
        state, tracker, done = step(state, tracker, jax.random.PRNGKey(index))
    jax.block_until_ready(done)
    return num_envs * rollout_length * rollouts / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--rollout-length", type=int, default=32)
    parser.add_argument("--rollouts", type=int, default=32)
    parser.add_argument("--cpu-devices", type=int)
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)
    from shapo_jax.training.devices import ENV_AXIS, check_divisible, make_mesh

    mesh = make_mesh()
    check_divisible(args.num_envs, mesh)
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(ENV_AXIS))
    env = envs.make(args.env)
    results = {}
    for name, random_start, pool in CONFIGURATIONS:
        results[name] = measure(env, args.num_envs, args.rollout_length, args.rollouts,
                                random_start, pool, (split, split))
        base = results[CONFIGURATIONS[0][0]]
        print(f"{name:34s} {results[name]:9,.0f} env steps/s  ({results[name] / base:.2f}x)",
              flush=True)
    print(json.dumps({"env": args.env, "num_envs": args.num_envs,
                      "devices": mesh.devices.size, **results}))


if __name__ == "__main__":
    main()
