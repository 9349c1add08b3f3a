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

and prints env steps/s and each one's ratio to the first (measured in the order above and
again in reverse, the two means reported, so that warm-up favours no configuration). Then
`--components`: the time of one whole-batch reset and of one batch step, and what they imply
per step for larger batches: with 1000-step episodes and random starts some env finishes on
a share 1 - (1 - 1/1000)^N of the steps, each paying a whole reset when resets are computed on
the step, against one reset per rollout with the pool. The env batch is sharded over all
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


def component_milliseconds(env, num_envs: int, sharding, repeats: int = 20) -> tuple[float, float]:
    """(one whole-batch reset, one batch step) in milliseconds, medians of `repeats` calls."""
    import numpy as np

    reset = jax.jit(lambda k: reset_batch(env, k, num_envs), out_shardings=sharding)
    state = reset(jax.random.PRNGKey(0))
    action = jnp.zeros((num_envs, env.action_size))
    step = jax.jit(jax.vmap(env.step), in_shardings=(sharding, sharding),
                   out_shardings=sharding)
    jax.block_until_ready(step(state, action))

    def median(fn, *args) -> float:
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - tic)
        return 1e3 * float(np.median(times))

    return median(reset, jax.random.PRNGKey(1)), median(step, state, action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--rollout-length", type=int, default=32)
    parser.add_argument("--rollouts", type=int, default=32)
    parser.add_argument("--cpu-devices", type=int)
    parser.add_argument("--components", action="store_true",
                        help="only time one reset and one step, and print the per-step model")
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)
    from shapo_jax.training.devices import ENV_AXIS, check_divisible, make_mesh

    mesh = make_mesh()
    check_divisible(args.num_envs, mesh)
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(ENV_AXIS))
    env = envs.make(args.env)
    if args.components:
        reset_ms, step_ms = component_milliseconds(env, args.num_envs, split)
        print(f"{args.num_envs} envs: one whole-batch reset {reset_ms:.2f} ms, one step "
              f"{step_ms:.2f} ms ({reset_ms / step_ms:.2f} steps)")
        for n in (256, 1024, 4096, 16384, 65536):
            share = 1.0 - (1.0 - 1.0 / env.episode_length) ** n
            print(f"  N={n:6d}: resets on the step cost +{100 * share * reset_ms / step_ms:5.1f}% "
                  f"per step, the pool +{100 * reset_ms / step_ms / args.rollout_length:4.1f}% "
                  "(reset/step ratio as measured at this N)")
        return
    runs: dict[str, list[float]] = {name: [] for name, _, _ in CONFIGURATIONS}
    for order in (CONFIGURATIONS, CONFIGURATIONS[::-1]):
        for name, random_start, pool in order:
            runs[name].append(measure(env, args.num_envs, args.rollout_length, args.rollouts,
                                      random_start, pool, (split, split)))
    results = {name: sum(v) / len(v) for name, v in runs.items()}
    base = results[CONFIGURATIONS[0][0]]
    for name, value in results.items():
        print(f"{name:34s} {value:9,.0f} env steps/s  ({value / base:.2f}x; "
              f"{', '.join(f'{v:,.0f}' for v in runs[name])})", flush=True)
    print(json.dumps({"env": args.env, "num_envs": args.num_envs,
                      "devices": mesh.devices.size, **results}))


if __name__ == "__main__":
    main()
