"""Shared by the benchmarks that time whole training programs side by side
(bench_member_sharding.py, bench_kl_stop.py): their flags and their interleaved timing."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def parse_program_args(doc: str, **defaults: Any) -> tuple[argparse.Namespace, Any]:
    """shapo-train's config flags (`add_config_arguments`, with `defaults`) plus --updates,
    --rounds and --cpu-devices; splits the CPU before JAX starts. Returns (args, TrainConfig)."""
    from shapo_jax.training.cli import add_config_arguments, config_from_args
    from shapo_jax.training.devices import use_cpu_devices

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_config_arguments(parser)
    parser.set_defaults(**{"env": "SafetyPointGoal1", "algo": "ppo_lag", "seeds": 4,
                           "num_envs": 1024, **defaults})
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N XLA devices")
    parser.add_argument("--checkpoint", metavar="RUN_DIR",
                        help="start every call from the newest checkpoint of the shapo-train "
                        "run in RUN_DIR, with its config (the config flags are then ignored), "
                        "instead of a new run")
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)
    if args.checkpoint:
        from shapo_jax.training import TrainConfig

        data = json.loads((Path(args.checkpoint) / "config.json").read_text())
        return args, TrainConfig.from_dict(data)
    return args, config_from_args(args)


def time_programs(programs: dict[str, Any], hp: Any, updates: int, rounds: int,
                  checkpoint: str | None = None,
                  ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    """Env steps per second (all members; median of `rounds`) and the metrics of every timed
    call of each `TrainingProgram`, compiled once for `updates` updates per call and timed in
    interleaved rounds. Every call starts from the same state, a new run's or the newest
    checkpoint of the run directory `checkpoint` (a trained run's: its policies, and so its
    physics, as late in training), so all programs step the same policies through the same
    physics."""
    import jax

    from shapo_jax.training.checkpoint import Checkpointer

    members = jax.tree_util.tree_leaves(hp)[0].shape[0]
    seeds = list(range(members))
    checkpointer = Checkpointer(Path(checkpoint) / "checkpoints") if checkpoint else None

    def start(program: Any) -> Any:
        if checkpointer is None:
            return jax.block_until_ready(program.init(seeds, hp))
        return checkpointer.restore(program.abstract_state(members, hp))[1]

    calls = {}
    for name, program in programs.items():
        state = start(program)
        calls[name] = program.compiled_chunk(state, hp, updates)
        jax.block_until_ready(calls[name](state, hp))  # warm-up call; the state is donated
    times: dict[str, list[float]] = {name: [] for name in calls}
    metrics: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            state = start(programs[name])
            tic = time.perf_counter()
            _, chunk_metrics = jax.block_until_ready(call(state, hp))
            times[name].append(time.perf_counter() - tic)
            metrics[name].append(chunk_metrics)
    steps = updates * next(iter(programs.values())).config.env_steps_per_update * members
    return {name: steps / statistics.median(t) for name, t in times.items()}, metrics
