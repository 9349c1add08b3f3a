"""PPO's KL early stop against all of its epochs, side by side: what stopping saves.

    .venv/bin/python scripts/bench_kl_stop.py --env SafetyPointGoal1 --seeds 4 \\
        --preset omnisafe --num-envs 1024 --set rollout_length=20 --cpu-devices 2

With `target_kl` (OmniSafe's 0.02 in `--preset omnisafe`) the update's epochs are a while loop
that ends at the stop (shapo_jax/update/ppo.py), so the epochs after it cost nothing; the
program without `target_kl` runs all `update_epochs` (40 in the preset), which is also what an
early stop by masking costs. Both programs are compiled once, then timed in interleaved rounds
(median of `--rounds` calls of `--updates` updates each), every call from the same initial
state: the same policies through the same physics, so that only the epochs differ
(scripts/program_bench.py).
"""

from __future__ import annotations

import dataclasses
import statistics

from program_bench import parse_program_args, time_programs


def main() -> None:
    args, stopped = parse_program_args(__doc__, preset="omnisafe")
    if stopped.target_kl is None:
        raise SystemExit("bench_kl_stop: the config has no target_kl; pass --set target_kl=0.02")
    import numpy as np

    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.program import TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    env, mesh = stopped.make_env(), make_mesh()
    hp = broadcast_hyperparameters(stopped, stopped.num_seeds)
    every = dataclasses.replace(stopped, target_kl=None)
    programs = {f"stop at KL {stopped.target_kl:g}": TrainingProgram(stopped, mesh, env=env),
                f"all {stopped.update_epochs} epochs": TrainingProgram(every, mesh, env=env)}
    rates, metrics = time_programs(programs, hp, args.updates, args.rounds,
                                  args.checkpoint)
    epochs_done = [float(np.mean(m["ppo_epochs_done"])) for m in next(iter(metrics.values()))]
    print(f"{stopped.env} {stopped.algo}: {stopped.num_seeds} members x {stopped.num_envs} envs "
          f"x {stopped.rollout_length} steps, {stopped.num_minibatches} minibatches, "
          f"{len(mesh.devices.flat)} device(s), {args.updates} update(s) per call")
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:9,.0f} env steps/s (all members)")
    print(f"  epochs done with the stop: {statistics.mean(epochs_done):.1f} of "
          f"{stopped.update_epochs} (mean over members and updates)")
    stop, all_epochs = rates.values()
    print(f"  ratio stop / all epochs: {stop / all_epochs:.2f}")


if __name__ == "__main__":
    main()
