"""The host-side loop around the compiled trainer: seeds vmapped in one program, the env
batch sharded over all devices, progress on the terminal, metrics.jsonl, orbax checkpoints,
periodic deterministic evaluation, resume, and the final plot and summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from shapo_jax.metrics import MetricsWriter, plot_training, read_metrics
from shapo_jax.metrics.records import log_records
from shapo_jax.training.checkpoint import Checkpointer, atomic_write_json
from shapo_jax.training.config import Hyperparameters, TrainConfig
from shapo_jax.training.devices import (
    check_divisible,
    cpu_batch_warning,
    make_mesh,
    state_sharding,
)
from shapo_jax.training.train import TrainState, make_train

SEED_AXIS = "seeds"  # the vmapped axis of seeds (and settings)
SUMMARY_KEYS = ("episode_return", "episode_cost", "cumulative_cost", "lagrange_multiplier")


def seed_keys(config: TrainConfig) -> jax.Array:
    """One key per seed: seed s of base seed b is PRNGKey(b + s) (independent of num_seeds)."""
    return jnp.stack([jax.random.PRNGKey(config.seed + s) for s in range(config.num_seeds)])


def broadcast_hyperparameters(config: TrainConfig, count: int) -> Hyperparameters:
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (count,)), config.hyperparameters())


class Runner:
    """Trains `config.num_seeds` seeds of `config` on `env`, writing into `out`."""

    def __init__(self, config: TrainConfig, env: Env, out: str | Path, resume: bool = False,
                 hyperparameters: Hyperparameters | None = None, log=print):
        self.config, self.env, self.out, self.log = config, env, Path(out), log
        self.mesh = make_mesh()
        check_divisible(config.num_envs, self.mesh)
        self.trainer = make_train(config, env, vmap_axis_name=SEED_AXIS)
        self.hp = (broadcast_hyperparameters(config, config.num_seeds)
                   if hyperparameters is None else hyperparameters)
        self.checkpointer = Checkpointer(self.out / "checkpoints")
        self.writer = MetricsWriter(self.out / "metrics.jsonl")
        self.resume = resume

        init = jax.vmap(self.trainer.init)
        shape = jax.eval_shape(init, seed_keys(config), self.hp)
        self.shardings = state_sharding(shape, self.mesh, leading_axes=1)
        self._init = jax.jit(init, out_shardings=self.shardings)
        self._run = {}
        self.compile_seconds = 0.0
        self._first_update = 0
        self._evaluate = jax.jit(jax.vmap(self.trainer.evaluate, in_axes=(0, None)))
        self._abstract_state = shape
        # Resuming reads the checkpoint now, so that a missing, corrupt or mismatched one is
        # reported when the Runner is built (the CLI's clean error), before anything compiles.
        self._restored = self._restore() if resume else None

    def _restore(self) -> tuple[int, TrainState]:
        try:
            if self.checkpointer.latest_step() is None:
                raise FileNotFoundError(
                    f"--resume: no checkpoint under {self.out / 'checkpoints'}"
                )
            target = jax.tree_util.tree_map(
                lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                self._abstract_state, self.shardings,
            )
            return self.checkpointer.restore(target)
        except BaseException:
            self.checkpointer.close()
            raise

    def _run_fn(self, num_updates: int, state: TrainState):
        """The compiled program of `num_updates` updates (compiled ahead of time, timed)."""
        if num_updates not in self._run:
            run = jax.vmap(lambda s, hp: self.trainer.run(s, num_updates, hp),
                           axis_name=SEED_AXIS)
            tic = time.perf_counter()
            self._run[num_updates] = jax.jit(
                run, in_shardings=(self.shardings, None),
                out_shardings=(self.shardings, None), donate_argnums=0,
            ).lower(state, self.hp).compile()
            seconds = time.perf_counter() - tic
            self.compile_seconds += seconds
            self.log(f"compiled {num_updates} update(s) per call in {seconds:.1f} s")
        return self._run[num_updates]

    def initial_state(self) -> tuple[int, TrainState]:
        """(updates done, state): a fresh state, or the last checkpoint when resuming."""
        if self.resume:
            restored = self._restored if self._restored is not None else self._restore()
            self._restored = None  # the run donates this state: hand it out once
            return restored
        atomic_write_json(self.out / "config.json", self.config.to_dict())
        if self.writer.path.exists():
            self.writer.path.unlink()
        return 0, self._init(seed_keys(self.config), self.hp)

    def train(self, plot: bool = True) -> dict[str, Any]:
        cfg = self.config
        done, state = self.initial_state()
        if self.resume:
            self.writer.truncate_after(done * cfg.env_steps_per_update)
            # The run may have been extended (--resume DIR --total-steps N): config.json
            # describes the run as it continues, so a later plain --resume goes on from here.
            atomic_write_json(self.out / "config.json", cfg.to_dict())
            self.log(f"resuming {self.out} at update {done} of {cfg.num_updates}")
        advice = cpu_batch_warning(self.env, cfg.num_seeds * cfg.num_envs // self.mesh.devices.size,
                                   jax.devices()[0].platform)
        if advice:
            self.log(advice)
        self.log(f"{cfg.algo} on {cfg.env}: {cfg.num_seeds} seed(s) x {cfg.num_envs} envs on "
                 f"{self.mesh.devices.size} {jax.devices()[0].platform} device(s), "
                 f"{cfg.num_updates} updates of {cfg.env_steps_per_update} env steps")
        log_index = done // cfg.updates_per_log
        self._first_update = done
        last_records: list[dict[str, Any]] = []
        start = time.perf_counter()
        while done < cfg.num_updates:
            chunk = min(cfg.updates_per_log, cfg.num_updates - done)
            run = self._run_fn(chunk, state)
            tic = time.perf_counter()
            state, metrics = run(state, self.hp)
            last = jax.tree_util.tree_map(lambda x: x[:, -1], metrics)
            last = jax.device_get(last)
            elapsed = time.perf_counter() - tic
            done += chunk
            log_index += 1
            env_steps = done * cfg.env_steps_per_update
            sps = chunk * cfg.env_steps_per_update * cfg.num_seeds / elapsed
            extra = {"sps": sps, "update": done}
            if log_index % cfg.eval_every == 0 or done == cfg.num_updates:
                eval_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 10_000), done)
                result = jax.device_get(self._evaluate(state, eval_key))
                last["eval_return"] = np.asarray(result.episode_return)
                last["eval_cost"] = np.asarray(result.episode_cost)
            last_records = log_records(last, env_steps, extra)
            self.writer.write(last_records)
            if log_index % cfg.checkpoint_every == 0 or done == cfg.num_updates:
                self.checkpointer.save(done, state)
            self._progress(done, env_steps, last_records, sps,
                           time.perf_counter() - start - self.compile_seconds)
        self.checkpointer.close()
        records = read_metrics(self.writer.path)
        if plot and records:
            plot_training(records, self.out / "training.png", cfg.cost_limit,
                          title=f"{cfg.algo} on {cfg.env}")
        return self.summary(last_records)

    def _progress(self, done, env_steps, records, sps, wall) -> None:
        cfg = self.config

        def mean(key: str, width: int, digits: int) -> str:
            values = [r[key] for r in records if r.get(key) is not None and np.isfinite(r[key])]
            return f"{np.mean(values):{width}.{digits}f}" if values else "-".rjust(width)

        done_now = done - self._first_update
        remaining = wall / done_now * (cfg.num_updates - done) if done_now else 0.0
        # Episode return and cost appear once episodes finish; until then the cost column's
        # estimate (cost rate x episode length, what the multiplier sees) shows the trend.
        self.log(f"[{done:>5}/{cfg.num_updates}] steps {env_steps:>11,} | "
                 f"return {mean('episode_return', 8, 2)} | cost {mean('episode_cost', 7, 2)} "
                 f"(est {mean('episode_cost_estimate', 7, 2)}) | "
                 f"lambda {mean('lagrange_multiplier', 6, 3)} | {sps:10,.0f} steps/s | "
                 f"eta {remaining:5.0f}s")
        sys.stdout.flush()

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {"env": cfg.env, "algo": cfg.algo, "seeds": cfg.num_seeds,
                               "env_steps": records[0]["env_steps"] if records else 0,
                               "out": str(self.out)}
        for key in SUMMARY_KEYS + ("eval_return", "eval_cost"):
            values = [r[key] for r in records if r.get(key) is not None]
            if values:
                out[key] = float(np.mean(values))
        out["cost_limit"] = cfg.cost_limit
        out["compile_seconds"] = round(self.compile_seconds, 1)
        return out
