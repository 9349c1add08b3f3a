"""PPO's KL early stop against all of its epochs, side by side: what stopping saves.

    .venv/bin/python scripts/bench_kl_stop.py --env SafetyPointGoal1 --seeds 4 \\
        --preset omnisafe --num-envs 1024 --set rollout_length=20 --cpu-devices 2

With `target_kl` (OmniSafe's 0.02 in `--preset omnisafe`) the update's epochs are a while loop
that ends at the stop (shapo_jax/update/ppo.py), so the epochs after it cost nothing; the
program without `target_kl` runs all `update_epochs` (40 in the preset), which is also what an
early stop by masking costs. Both programs are compiled once, then timed in interleaved rounds
(median of `--rounds` calls of `--updates` updates each), every call from the same initial
state: the same policies through the same physics, so that only the epochs differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

from shapo_jax.training.devices import use_cpu_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--algo", default="ppo_lag")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--preset", default="omnisafe",
                        help="a named bundle of settings (training.presets)")
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N XLA devices")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="TrainConfig override, repeatable")
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)
    import dataclasses

    import jax
    import numpy as np

    from shapo_jax.training import TrainConfig
    from shapo_jax.training.cli import parse_override_value
    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.presets import preset_overrides
    from shapo_jax.training.program import TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    fields = preset_overrides(args.preset, args.algo) if args.preset else {}
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = parse_override_value(value)
    fields.update(env=args.env, algo=args.algo, num_envs=args.num_envs)
    stopped = TrainConfig.from_dict(fields)
    if stopped.target_kl is None:
        raise SystemExit("bench_kl_stop: the config has no target_kl; pass --set target_kl=0.02")
    configs = {f"stop at KL {stopped.target_kl:g}": stopped,
               f"all {stopped.update_epochs} epochs": dataclasses.replace(stopped, target_kl=None)}
    env = stopped.make_env()
    mesh = make_mesh()
    seeds = list(range(args.seeds))
    hp = broadcast_hyperparameters(stopped, len(seeds))
    steps = args.updates * stopped.env_steps_per_update * len(seeds)
    programs, calls = {}, {}
    for name, config in configs.items():
        programs[name] = TrainingProgram(config, mesh, env=env)
        state = programs[name].init(seeds, hp)
        calls[name] = programs[name].compiled_chunk(state, hp, args.updates)
        jax.block_until_ready(calls[name](state, hp))  # warm-up call; the state is donated
    times: dict[str, list[float]] = {name: [] for name in calls}
    epochs_done: list[float] = []
    for _ in range(args.rounds):
        for name, call in calls.items():
            # Every call starts from the same initial state, so both programs step the same
            # policies through the same physics and differ in their epochs only.
            state = jax.block_until_ready(programs[name].init(seeds, hp))
            tic = time.perf_counter()
            state, metrics = jax.block_until_ready(call(state, hp))
            times[name].append(time.perf_counter() - tic)
            if "ppo_epochs_done" in metrics:
                epochs_done.append(float(np.mean(metrics["ppo_epochs_done"])))
    print(f"{args.env} {args.algo}: {len(seeds)} members x {args.num_envs} envs x "
          f"{stopped.rollout_length} steps, {stopped.num_minibatches} minibatches, "
          f"{len(mesh.devices.flat)} device(s), {args.updates} update(s) per call")
    rates = {name: steps / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:9,.0f} env steps/s (all members)")
    print(f"  epochs done with the stop: {statistics.mean(epochs_done):.1f} of "
          f"{stopped.update_epochs} (mean over members and updates)")
    stop, every = rates.values()
    print(f"  ratio stop / all epochs: {stop / every:.2f}")


if __name__ == "__main__":
    main()
