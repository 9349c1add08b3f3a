"""A trained run outside the trainer: evaluation (`shapo-eval`) and export (`shapo-export`).

Both read RUN_DIR/config.json, rebuild the run's environment with its env options, restore a
checkpoint through `Checkpointer` into `TrainingProgram.abstract_state` (the layout the run
saved, restored onto one device whatever the run was sharded over) and take one member's
actor parameters and observation statistics. Everything that can be wrong with the inputs
(directory, config, checkpoint step, member) is checked by `select_run` from the files alone,
before anything is traced or compiled.

Evaluation (`evaluate_member`): N full episodes of the member's policy, each
ceil(episode_length / action_repeat) policy steps with the run's action repeat
(docs/environments.md §4), stepped as one batch in the pieces XLA:CPU's LAPACK calls allow
(`devices.env_pieces`, docs/environments.md §13), as `Trainer.evaluate` does. Key rule, for
the evaluation seed S:

    reset_key, action_key = jax.random.split(jax.random.PRNGKey(S))
    episode i starts from env.reset(jax.random.split(reset_key, N)[i])
    a stochastic policy's step t samples with jax.random.split(action_key, horizon)[t]

S defaults to the member's index: each seed of a run meets layouts of its own (their mean
then spans members x N layouts), and member K of two runs meets the same ones (a paired
comparison). Each report is kept in a file of its own, named by what was evaluated
(`report_path`), so evaluating another member, checkpoint or seed loses none.

Export (`policy_fields`): the deterministic policy as plain arrays for
`shapo_jax.policy.exported` (format described there).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from shapo_jax.io import atomic_save, atomic_write_json
from shapo_jax.policy.exported import FORMAT_VERSION, OBS_STD_EPSILON
from shapo_jax.rollout import full_episodes
from shapo_jax.rollout.normalization import OBS_CLIP, RunningStatistics
from shapo_jax.training.checkpoint import Checkpointer
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.devices import env_pieces, make_mesh
from shapo_jax.training.program import TrainingProgram, member_hyperparameters
from shapo_jax.training.runner import run_seeds
from shapo_jax.training.train import Trainer, TrainState, make_train

EVAL_DIR = "eval"


class RunError(ValueError):
    """A run directory, checkpoint or member that cannot be used (the message says why)."""


@dataclasses.dataclass(frozen=True)
class RunSelection:
    """One member of one checkpoint of a run, as the files describe it (nothing restored)."""

    directory: Path
    config: TrainConfig
    step: int  # the checkpoint: updates done when it was saved
    steps: tuple[int, ...]  # every checkpoint of the run
    member: int  # index of the seed in the vmapped run
    seed: int  # that member's training seed


def select_run(run_dir: str | os.PathLike, checkpoint: int | None = None,
               member: int = 0) -> RunSelection:
    """Check the run directory, its config.json, the checkpoint step (default the newest) and
    the member; raises RunError naming the bad value and the valid ones."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise RunError(f"{directory}: no config.json (not a shapo-train run directory)")
    try:
        config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise RunError(f"{config_path} cannot be read: {error}") from None
    checkpoints = directory / "checkpoints"
    steps: tuple[int, ...] = ()
    if checkpoints.is_dir():
        checkpointer = Checkpointer(checkpoints)
        try:
            steps = tuple(checkpointer.all_steps())
        finally:
            checkpointer.close()
    if not steps:
        raise RunError(f"{directory}: no checkpoint under {checkpoints}")
    step = steps[-1] if checkpoint is None else checkpoint
    if step not in steps:
        raise RunError(f"--checkpoint {checkpoint}: no such checkpoint in {directory}; "
                       f"valid steps: {', '.join(map(str, steps))}")
    members = config.num_seeds
    if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < members:
        raise RunError(f"--member {member}: the run has {members} member(s) (seeds "
                       f"{', '.join(map(str, run_seeds(config)))}); valid: 0..{members - 1}")
    return RunSelection(directory=directory, config=config, step=step, steps=steps,
                        member=member, seed=run_seeds(config)[member])


@dataclasses.dataclass(frozen=True)
class RestoredMember:
    """A member's state restored from its checkpoint (host arrays, no member axis)."""

    selection: RunSelection
    env: Env
    trainer: Trainer  # the run's functions for one member (its policy)
    state: TrainState
    lapack_limit: int | None  # the most envs one XLA:CPU LAPACK call may take (None: any)

    @property
    def diverged(self) -> bool:
        return bool(self.state.diverged)


def restore_member(selection: RunSelection, env: Env | None = None) -> RestoredMember:
    """The selected member's state, restored on this process's first device (the run's
    layout: `TrainingProgram.abstract_state` of all its members). Traces, compiles nothing."""
    config = selection.config
    env = config.make_env() if env is None else env
    program = TrainingProgram(config, make_mesh(jax.local_devices()[:1]), env)
    members = config.num_seeds
    target = program.abstract_state(
        members, member_hyperparameters([config.traced_values()] * members))
    checkpointer = Checkpointer(selection.directory / "checkpoints")
    try:
        _, state = checkpointer.restore(target, selection.step)
    finally:
        checkpointer.close()
    host = jax.device_get(state)
    member_state = jax.tree_util.tree_map(lambda x: np.asarray(x)[selection.member], host)
    return RestoredMember(selection=selection, env=env, trainer=make_train(config, env),
                          state=member_state, lapack_limit=program.lapack_limit)


# ----- evaluation -----------------------------------------------------------------------


def evaluation_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(reset key, action key) of the evaluation with seed `seed` (module docstring)."""
    reset_key, action_key = jax.random.split(jax.random.PRNGKey(int(seed)))
    return reset_key, action_key


def make_episodes(trainer: Trainer, episodes: int, pieces: int = 1, deterministic: bool = True,
                  record_first: bool = False):
    """A pure function (state, reset_key, action_key) -> (returns [N], costs [N], recording):
    `episodes` full episodes (`full_episodes`) of `state`'s policy (the trainer's `policy`,
    mean action when `deterministic`), stepped in `pieces` sequential calls. With
    `record_first`, recording is (initial state, per-step states, alive before each step) of
    episode 0, else None."""
    def run(state: TrainState, reset_key: jax.Array, action_key: jax.Array):
        return full_episodes(trainer.env, trainer.policy(state, deterministic=deterministic),
                             reset_key, action_key, episodes, trainer.config.action_repeat,
                             pieces, record_first)

    return run


def mean_and_se(values: np.ndarray) -> tuple[float, float | None]:
    """Mean and standard error std / sqrt(n) (ddof 1; None for a single value)."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return float(values.mean()), None
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def evaluate_member(restored: RestoredMember, episodes: int = 32, seed: int | None = None,
                    deterministic: bool = True, record_first: bool = False
                    ) -> tuple[dict[str, Any], Any]:
    """Evaluate the member over `episodes` full episodes (module docstring's key rule;
    `seed` None: the member's index).

    Returns (report, recording): the report's figures are null for a diverged member, which
    is not evaluated; recording is episode 0's states stacked on a time axis (initial state
    first, up to its end) when `record_first`, else None.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    selection, config = restored.selection, restored.selection.config
    seed = selection.member if seed is None else seed
    report: dict[str, Any] = {
        "run": str(selection.directory), "env": config.env,
        "env_options": dict(config.env_options), "algo": config.algo,
        "checkpoint_step": selection.step, "member": selection.member,
        "run_seed": selection.seed, "seed": int(seed), "episodes": episodes,
        "deterministic": bool(deterministic), "action_repeat": config.action_repeat,
        "episode_length": int(restored.env.episode_length), "cost_limit": config.cost_limit,
        "diverged": restored.diverged,
    }
    if restored.diverged:  # a diverged member's frozen state is not what it trained
        report.update({key: None for key in (
            "episode_return_mean", "episode_return_se", "episode_cost_mean",
            "episode_cost_se", "episode_returns", "episode_costs")})
        return report, None
    pieces = env_pieces(episodes, 1, 1, restored.lapack_limit)
    run = jax.jit(make_episodes(restored.trainer, episodes, pieces, deterministic,
                                record_first))
    # The policy reads the learner and the statistics alone: the run's env batch stays here.
    policy_state = restored.state.replace(env_state=None, tracker=None, episodes=None)
    returns, costs, recording = jax.device_get(run(policy_state, *evaluation_keys(seed)))
    returns, costs = np.asarray(returns, np.float64), np.asarray(costs, np.float64)
    if not (np.all(np.isfinite(returns)) and np.all(np.isfinite(costs))):
        raise FloatingPointError("the evaluation produced non-finite returns or costs")
    report["episode_return_mean"], report["episode_return_se"] = mean_and_se(returns)
    report["episode_cost_mean"], report["episode_cost_se"] = mean_and_se(costs)
    report["episode_returns"] = returns.tolist()
    report["episode_costs"] = costs.tolist()
    report["pieces"] = pieces
    if recording is not None:
        first, states, alive = recording
        length = int(np.sum(np.asarray(alive) > 0))  # steps taken before the episode ended
        recording = jax.tree_util.tree_map(
            lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)[:length]]),
            first, states)
    return report, recording


def policy_kind(report: dict[str, Any]) -> str:
    """'deterministic' (the mean action) or 'stochastic' (sampled), as the report was run."""
    return "deterministic" if report["deterministic"] else "stochastic"


def report_path(run_dir: str | os.PathLike, report: dict[str, Any]) -> Path:
    """RUN_DIR/eval/member{K}-checkpoint{STEP}-{deterministic|stochastic}-seed{S}-episodes{N}
    .json: one file for each evaluation that can differ."""
    name = (f"member{report['member']}-checkpoint{report['checkpoint_step']}-"
            f"{policy_kind(report)}-seed{report['seed']}-episodes{report['episodes']}.json")
    return Path(run_dir) / EVAL_DIR / name


def write_report(run_dir: str | os.PathLike, report: dict[str, Any]) -> Path:
    """The report at `report_path`, written atomically."""
    return atomic_write_json(report_path(run_dir, report), report)


# ----- export -----------------------------------------------------------------------------


def dense_layers(actor_params: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of the actor's MLP layers, in order (Dense_0, Dense_1, ...)."""
    mlp = actor_params["params"]["MLP_0"]
    names = sorted(mlp, key=lambda name: int(name.rsplit("_", 1)[1]))
    if [n.rsplit("_", 1)[0] for n in names] != ["Dense"] * len(names):
        raise ValueError(f"unexpected actor layers {sorted(mlp)}; expected Dense_0..Dense_k")
    return [(np.asarray(mlp[n]["kernel"], np.float32), np.asarray(mlp[n]["bias"], np.float32))
            for n in names]


def observation_statistics(stats: RunningStatistics, normalize: bool
                           ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(obs_mean, obs_std, applied): std exactly as `normalize` computes it, in float32;
    (0, 1, False) when the policy does not normalise (off, or no statistics seen)."""
    applied = bool(normalize) and float(stats.count) > 0
    if not applied:
        size = np.shape(stats.mean)[-1]
        return np.zeros(size, np.float32), np.ones(size, np.float32), False
    variance = jnp.asarray(stats.sum_squared_deviations) / jnp.maximum(
        jnp.asarray(stats.count), 1.0)
    std = jnp.sqrt(variance + OBS_STD_EPSILON)
    return np.asarray(stats.mean, np.float32), np.asarray(std, np.float32), True


def observation_layout(env: Env) -> list[tuple[str, int]]:
    """The observation's blocks, in order (`observation_blocks` where the env has them; one
    block "observation" otherwise)."""
    blocks = getattr(env, "observation_blocks", None)
    if blocks is None:
        return [("observation", int(env.observation_size))]
    return [(str(name), int(size)) for name, size in blocks]


def policy_fields(restored: RestoredMember) -> dict[str, np.ndarray]:
    """The member's deterministic policy as the arrays of an exported policy file
    (`shapo_jax.policy.exported`, format version 1). Refuses a diverged member."""
    from envs import action_bounds

    selection, config, env = restored.selection, restored.selection.config, restored.env
    if restored.diverged:
        raise RunError(f"member {selection.member} (seed {selection.seed}) of "
                       f"{selection.directory} diverged: its frozen state is not a trained "
                       "policy; nothing exported")
    params = restored.state.learner.actor_params
    layers = dense_layers(params)
    obs_mean, obs_std, applied = observation_statistics(restored.state.obs_stats,
                                                        config.normalize_observations)
    low, high = action_bounds(env)
    fields: dict[str, np.ndarray] = {
        "format_version": np.asarray(FORMAT_VERSION, np.int64),
        "env": np.asarray(config.env),
        "env_options": np.asarray(json.dumps(dict(config.env_options), sort_keys=True)),
        "algo": np.asarray(config.algo),
        "activation": np.asarray(config.activation),
        "num_layers": np.asarray(len(layers), np.int64),
        "log_std": np.asarray(params["params"]["log_std"], np.float32),
        "obs_mean": obs_mean, "obs_std": obs_std,
        "obs_clip": np.asarray(OBS_CLIP, np.float32),
        "obs_count": np.asarray(restored.state.obs_stats.count, np.float32),
        "normalize_observations": np.asarray(applied, np.bool_),
        "action_low": low, "action_high": high,
        "action_repeat": np.asarray(config.action_repeat, np.int64),
        "episode_length": np.asarray(int(env.episode_length), np.int64),
        "obs_size": np.asarray(int(env.observation_size), np.int64),
        "obs_layout": np.asarray(json.dumps(observation_layout(env))),
        "seed": np.asarray(selection.seed, np.int64),
        "checkpoint_step": np.asarray(selection.step, np.int64),
        "member": np.asarray(selection.member, np.int64),
    }
    for i, (kernel, bias) in enumerate(layers):
        fields[f"kernel_{i}"], fields[f"bias_{i}"] = kernel, bias
    return fields


def write_policy(path: str | os.PathLike, fields: dict[str, np.ndarray]) -> Path:
    """`fields` as an uncompressed .npz at `path` (any name), written atomically."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, **fields)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_save(path, save)
