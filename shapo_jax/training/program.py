"""The host-side program of training, shared by shapo-train (`Runner`) and shapo-sweep.

A `TrainingProgram` holds the compiled functions of one static config on one device mesh:
members (seeds, or a sweep's seeds x settings) vmapped on a leading axis, the env batch of
every member sharded over the mesh (or, where the members divide evenly over the devices of
one process, whole members per device: `shards_members`), chunks of `updates_per_log`
updates compiled ahead of time (so compile time stays out of the measured throughput), the
evaluation cadence, and the key rules below. Both entry points call
`TrainingProgram.chunks`, so the same members in a program of the same size give the same
numbers whichever tool trained them (another member count may change the layout, and then
the numbers agree to rounding).

Key rules (a member is identified by its seed s):
  training key    PRNGKey(s)                                   (`member_key`)
  evaluation key  fold_in(PRNGKey(s + 10000), updates done)   (`evaluation_key`)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env
from jax.sharding import Mesh

from shapo_jax.training.config import TrainConfig
from shapo_jax.training.devices import (
    check_divisible,
    env_pieces,
    lapack_batch_limit,
    state_sharding,
)
from shapo_jax.training.hyperparameters import Hyperparameters, stack_hyperparameters
from shapo_jax.training.train import Trainer, TrainState, make_train

MEMBER_AXIS = "members"  # the vmapped axis of a program's runs
EVAL_SEED_OFFSET = 10_000


def member_key(seed: int) -> jax.Array:
    """The training key of the member with seed `seed`."""
    return jax.random.PRNGKey(int(seed))


def evaluation_key(seed: int, updates_done: int) -> jax.Array:
    """The key of the member's deterministic evaluation after `updates_done` updates."""
    return jax.random.fold_in(jax.random.PRNGKey(int(seed) + EVAL_SEED_OFFSET), updates_done)


def member_hyperparameters(values: Sequence[dict[str, float]]) -> Hyperparameters:
    """Members' traced settings (name -> value each) stacked on a leading axis."""
    return stack_hyperparameters([Hyperparameters.from_values(v) for v in values])


@dataclasses.dataclass
class Chunk:
    """What one compiled call of `updates_per_log` updates produced.

    metrics: each metric of the chunk's last update as a [members] array, plus eval_return
      and eval_cost on the chunks that evaluate (every `eval_every`-th and the last).
    seconds: wall time of the call (compilation excluded).
    """

    updates_done: int
    env_steps: int  # per member
    updates: int  # in this chunk
    state: TrainState
    metrics: dict[str, np.ndarray]
    seconds: float


class TrainingProgram:
    """The compiled functions of `config` on `mesh` for any number of members."""

    def __init__(self, config: TrainConfig, mesh: Mesh, env: Env | None = None,
                 member_sharding: bool = True):
        check_divisible(config.num_envs, mesh)
        self.config, self.mesh = config, mesh
        self.member_sharding = member_sharding
        self.env = config.make_env() if env is None else env
        self.lapack_limit = lapack_batch_limit(self.env, self.platform)
        self._trainers: dict[tuple[int, int], Trainer] = {}
        self._jitted_init: dict[int, Any] = {}
        self._evaluators: dict[int, Any] = {}
        self._layouts: dict[int, tuple[TrainState, TrainState]] = {}
        self._compiled: dict[tuple[int, int], Any] = {}
        self.compile_seconds = 0.0

    @property
    def platform(self) -> str:
        return self.mesh.devices.flat[0].platform

    @property
    def trainer(self) -> Trainer:
        """The training functions of one member."""
        return self.trainer_for(1)

    def shards_members(self, num_members: int) -> bool:
        """Whether each device trains whole members (the state split on the member axis)
        rather than a slice of every member's envs: when several devices of one process
        share the members evenly (and `member_sharding`). Then each device also runs its own
        members' update, which the env split computes on every device alike (on 2 CPU
        devices that update is half of PPO's time at OmniSafe's settings, BENCHMARKS.md).
        Under several processes the env split stays, so every process reads all metrics."""
        devices = self.mesh.devices.size
        return (self.member_sharding and devices > 1 and num_members % devices == 0
                and jax.process_count() == 1)

    def pieces(self, num_members: int) -> tuple[int, int]:
        """(training, evaluation) pieces each device steps its envs in (`env_pieces`): on
        XLA:CPU, batches of LAPACK calls small enough never to wait on the thread pool.
        Evaluation is not split by env: each device holds the evaluation batch of every
        member it holds."""
        envs, members = self.device_batch(num_members)
        return (env_pieces(envs, 1, members, self.lapack_limit),
                env_pieces(self.config.eval_envs, 1, num_members, self.lapack_limit))

    def device_batch(self, num_members: int) -> tuple[int, int]:
        """(envs per member, members) one device steps in training."""
        devices = self.mesh.devices.size
        if self.shards_members(num_members):  # all envs of members / devices members
            return self.config.num_envs, num_members // devices
        return self.config.num_envs // devices, num_members

    def batching_note(self, num_members: int) -> str | None:
        """A line for the log when the envs are stepped in pieces, else None."""
        train, evaluation = self.pieces(num_members)
        if train == 1 and evaluation == 1:
            return None
        per_device, members = self.device_batch(num_members)
        return (f"stepping each device's {per_device} envs x {members} member(s) in "
                f"{train} sequential piece(s) (evaluation: {evaluation}): XLA:CPU's batched "
                f"LAPACK calls of this task hold at most {self.lapack_limit} matrices, which "
                "never wait on the thread pool (BENCHMARKS.md)")

    def trainer_for(self, num_members: int) -> Trainer:
        """The training functions for this many vmapped members (their env pieces)."""
        train, evaluation = self.pieces(num_members)
        if (train, evaluation) not in self._trainers:
            self._trainers[train, evaluation] = make_train(
                self.config, self.env, vmap_axis_name=MEMBER_AXIS,
                env_pieces=train, eval_pieces=evaluation)
        return self._trainers[train, evaluation]

    def _member_run(self, num_members: int, num_updates: int):
        """(members' state, hp) -> (state, metrics) of `num_updates` updates, every array
        with the leading member axis. One member runs unbatched (its axis dropped inside the
        call, its resets a branch on its own envs): a member axis of size one costs XLA:CPU
        about a fifth of the rollout's time (BENCHMARKS.md)."""
        trainer = self.trainer_for(num_members)
        if num_members > 1:
            return jax.vmap(lambda s, h: trainer.run(s, num_updates, h), axis_name=MEMBER_AXIS)
        train, evaluation = self.pieces(1)
        single = make_train(self.config, self.env, env_pieces=train, eval_pieces=evaluation)

        def run(state, hp):
            drop = lambda tree: jax.tree_util.tree_map(lambda x: x[0], tree)  # noqa: E731
            add = lambda tree: jax.tree_util.tree_map(lambda x: x[None], tree)  # noqa: E731
            return add(single.run(drop(state), num_updates, drop(hp)))

        return run

    def abstract_state(self, num_members: int, hp: Hyperparameters) -> TrainState:
        """Shapes, dtypes and shardings of the members' state (what a checkpoint restores)."""
        shape, shardings = self._layout(num_members, hp)
        return jax.tree_util.tree_map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shape, shardings)

    def shardings(self, num_members: int, hp: Hyperparameters) -> TrainState:
        return self._layout(num_members, hp)[1]

    def _layout(self, num_members: int, hp: Hyperparameters) -> tuple[TrainState, TrainState]:
        """(abstract state, shardings) for this many members, traced once per count."""
        if num_members not in self._layouts:
            keys = jnp.stack([member_key(0)] * num_members)
            shape = jax.eval_shape(jax.vmap(self.trainer_for(num_members).init), keys, hp)
            self._layouts[num_members] = (
                shape, state_sharding(shape, self.mesh, leading_axes=1,
                                      by_member=self.shards_members(num_members)))
        return self._layouts[num_members]

    def init(self, seeds: Sequence[int], hp: Hyperparameters) -> TrainState:
        """The members' initial state, sharded (member i has seed seeds[i], settings hp[i])."""
        count = len(seeds)
        if count not in self._jitted_init:
            self._jitted_init[count] = jax.jit(
                jax.vmap(self.trainer_for(count).init), out_shardings=self.shardings(count, hp))
        return self._jitted_init[count](jnp.stack([member_key(s) for s in seeds]), hp)

    def compiled_chunk(self, state: TrainState, hp: Hyperparameters,
                       num_updates: int) -> Callable[[TrainState, Hyperparameters], Any]:
        """The compiled `num_updates`-update call for this many members (compiled once)."""
        count = jax.tree_util.tree_leaves(hp)[0].shape[0]
        if (count, num_updates) not in self._compiled:
            shardings = self.shardings(count, hp)
            run = self._member_run(count, num_updates)
            tic = time.perf_counter()
            self._compiled[count, num_updates] = jax.jit(
                run, in_shardings=(shardings, None), out_shardings=(shardings, None),
                donate_argnums=0,
            ).lower(state, hp).compile()
            self.compile_seconds += time.perf_counter() - tic
        return self._compiled[count, num_updates]

    def evaluate(self, state: TrainState, seeds: Sequence[int],
                 updates_done: int) -> dict[str, np.ndarray]:
        """eval_return and eval_cost per member (deterministic policy, `evaluation_key`)."""
        keys = jnp.stack([evaluation_key(s, updates_done) for s in seeds])
        count = len(seeds)
        if count not in self._evaluators:
            self._evaluators[count] = jax.jit(jax.vmap(self.trainer_for(count).evaluate))
        result = jax.device_get(self._evaluators[count](state, keys))
        return {"eval_return": np.asarray(result.episode_return),
                "eval_cost": np.asarray(result.episode_cost)}

    def chunks(self, state: TrainState, hp: Hyperparameters, seeds: Sequence[int],
               updates_done: int = 0,
               on_compile: Callable[[int, float], None] | None = None) -> Iterator[Chunk]:
        """Train the members from `updates_done` to `config.num_updates`, one chunk a step.

        The state passed in is donated: continue from each chunk's `state`. `on_compile(n,
        seconds)` is called when the call of n updates is compiled.
        """
        cfg = self.config
        done = updates_done
        log_index = done // cfg.updates_per_log
        while done < cfg.num_updates:
            count = min(cfg.updates_per_log, cfg.num_updates - done)
            before = self.compile_seconds
            step = self.compiled_chunk(state, hp, count)
            if on_compile is not None and self.compile_seconds > before:
                on_compile(count, self.compile_seconds - before)
            tic = time.perf_counter()
            state, metrics = step(state, hp)
            last = jax.device_get(jax.tree_util.tree_map(lambda x: x[:, -1], metrics))
            seconds = max(time.perf_counter() - tic, 1e-9)
            done += count
            log_index += 1
            last = {key: np.asarray(value) for key, value in last.items()}
            if log_index % cfg.eval_every == 0 or done == cfg.num_updates:
                last.update(self.evaluate(state, seeds, done))
            yield Chunk(updates_done=done, env_steps=done * cfg.env_steps_per_update,
                        updates=count, state=state, metrics=last, seconds=seconds)


_PROGRAMS: dict[tuple[TrainConfig, tuple[int, ...]], TrainingProgram] = {}
_MAX_PROGRAMS = 16


def program_for(config: TrainConfig, mesh: Mesh) -> TrainingProgram:
    """The program of `config` on `mesh`, cached per (config, devices) so that repeated runs
    in one process (a sweep's groups, notebooks, tests) compile nothing twice. The cache
    holds compiled code only, never state, and keeps the newest 16 programs."""
    key = (config, tuple(d.id for d in mesh.devices.flat))
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= _MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = TrainingProgram(config, mesh)
    return _PROGRAMS[key]
