"""Benchmark the locomotion tasks: compile time and vmapped steps per second on this machine.

    .venv/bin/python scripts/bench_locomotion.py --envs SafetyAntVelocity --batch 1024 4096

Random actions, `--steps` environment steps inside one jitted `lax.scan` over a vmapped batch
(no auto-reset; terminated episodes keep stepping, as the physics cost is the same).
"""

from __future__ import annotations

import argparse
import time

import jax

import envs


def bench(name: str, batch: int, steps: int, backend: str | None) -> dict[str, float]:
    overrides = {} if backend is None else {"backend": backend}
    env = envs.make(name, **overrides)

    def run(key):
        keys = jax.random.split(key, batch + 1)
        state = jax.vmap(env.reset)(keys[1:])

        def body(carry, _):
            s, k = carry
            k, sub = jax.random.split(k)
            a = jax.random.uniform(sub, (batch, env.action_size), minval=-1.0, maxval=1.0)
            s = jax.vmap(env.step)(s, a)
            return (s, k), s.info["cost"].mean()

        (state, _), costs = jax.lax.scan(body, (state, keys[0]), None, length=steps)
        return costs.mean()

    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(jax.random.PRNGKey(1)))  # warm-up
    start = time.perf_counter()
    mean_cost = float(jax.block_until_ready(compiled(jax.random.PRNGKey(2))))
    run_s = time.perf_counter() - start
    return {"compile_s": compile_s, "steps_per_s": batch * steps / run_s,
            "mean_cost": mean_cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["SafetyHalfCheetahVelocity"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1024, 4096])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.steps} steps per run")
    print(f"{'env':28s} {'batch':>6s} {'compile s':>10s} {'steps/s':>10s} {'cost/step':>10s}")
    for name in args.envs:
        for batch in args.batch:
            r = bench(name, batch, args.steps, args.backend)
            print(f"{name:28s} {batch:6d} {r['compile_s']:10.1f} {r['steps_per_s']:10.0f} "
                  f"{r['mean_cost']:10.3f}", flush=True)


if __name__ == "__main__":
    main()
