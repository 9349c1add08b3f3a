"""shapo-train's host side: the seeds of one config trained by a `TrainingProgram` (vmapped
in one compiled program, envs sharded over all devices, periodic deterministic evaluation),
with progress on the terminal, metrics.jsonl, TensorBoard event files per seed (and W&B runs
when asked), orbax checkpoints, resume, and the final plot and summary."""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from brax.envs.base import Env

from shapo_jax.io import atomic_write_json
from shapo_jax.metrics import (
    MetricsWriter,
    RunLogger,
    TensorBoardWriter,
    WandbRuns,
    WandbSettings,
    import_wandb,
    plot_training,
    read_metrics,
    seed_run,
)
from shapo_jax.metrics.records import log_records
from shapo_jax.metrics.tensorboard import TENSORBOARD_DIR
from shapo_jax.training.checkpoint import Checkpointer
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.devices import make_mesh
from shapo_jax.training.hyperparameters import Hyperparameters
from shapo_jax.training.program import TrainingProgram, member_hyperparameters
from shapo_jax.training.train import TrainState
from shapo_jax.training.watchdog import Watchdog

SUMMARY_KEYS = ("episode_return", "episode_cost", "cumulative_cost", "lagrange_multiplier")
EPISODE_KEYS = ("episode_return", "episode_cost")  # the progress line's episode figures


def run_seeds(config: TrainConfig) -> list[int]:
    """The seeds of `shapo-train --seed b --seeds n`: b, b + 1, ..., b + n - 1."""
    return [config.seed + s for s in range(config.num_seeds)]


def broadcast_hyperparameters(config: TrainConfig, count: int) -> Hyperparameters:
    """`config`'s traced settings for `count` members."""
    return member_hyperparameters([config.traced_values()] * count)


class Runner:
    """Trains `config.num_seeds` seeds of `config` on `env`, writing into `out`: a thin
    caller of `TrainingProgram` that adds metrics.jsonl, checkpoints, resume and the plot.

    `tensorboard`: event files per seed under `out/tensorboard/seed_<s>/` (on by default).
    `wandb`: one W&B run per seed, grouped by the name of `out` (needs the wandb package)."""

    def __init__(self, config: TrainConfig, env: Env, out: str | Path, resume: bool = False,
                 hyperparameters: Hyperparameters | None = None, log=print,
                 stall_timeout: float | None = None, tensorboard: bool = True,
                 wandb: WandbSettings | None = None):
        self.config, self.env, self.out, self.log = config, env, Path(out), log
        self.tensorboard, self.wandb = tensorboard, wandb
        # Seconds without a finished chunk after which the process reports and exits
        # (`Watchdog`; None: never, the default for library use, e.g. in a notebook).
        self.watchdog = Watchdog(stall_timeout, advice=(
            f"Resume with shapo-train --resume {self.out}; raise --stall-timeout if a chunk "
            "of updates legitimately takes longer."))
        self.mesh = make_mesh()
        self.program = TrainingProgram(config, self.mesh, env)
        self.trainer = self.program.trainer
        self.seeds = run_seeds(config)
        self.hp = (broadcast_hyperparameters(config, config.num_seeds)
                   if hyperparameters is None else hyperparameters)
        self.checkpointer = Checkpointer(self.out / "checkpoints")
        self.writer = MetricsWriter(self.out / "metrics.jsonl")
        self.resume = resume
        # Under jax.distributed every process runs the same loop on the same numbers: process
        # 0 alone writes config.json, metrics.jsonl and the plot (orbax's checkpoints are
        # written by all of them together, each its own shards).
        self.writes_files = jax.process_index() == 0
        if wandb is not None and self.writes_files:
            import_wandb()  # missing or too old: a ValueError now, before anything compiles
        self._first_update = 0
        self._episode_figures: dict[int, dict[str, float]] = {}
        self._loggers: list[RunLogger] = []
        # Resuming reads the checkpoint now, so that a missing, corrupt or mismatched one is
        # reported when the Runner is built (the CLI's clean error), before anything compiles.
        self._restored = self._restore() if resume else None

    @property
    def compile_seconds(self) -> float:
        return self.program.compile_seconds

    def _restore(self) -> tuple[int, TrainState]:
        try:
            if self.checkpointer.latest_step() is None:
                raise FileNotFoundError(
                    f"--resume: no checkpoint under {self.out / 'checkpoints'}"
                )
            target = self.program.abstract_state(len(self.seeds), self.hp)
            return self.checkpointer.restore(target)
        except BaseException:
            self.checkpointer.close()
            raise

    def initial_state(self) -> tuple[int, TrainState]:
        """(updates done, state): a fresh state, or the last checkpoint when resuming."""
        if self.resume:
            restored = self._restored if self._restored is not None else self._restore()
            self._restored = None  # the run donates this state: hand it out once
            return restored
        if self.writes_files:
            atomic_write_json(self.out / "config.json", self.config.to_dict())
            if self.writer.path.exists():
                self.writer.path.unlink()
            # A fresh run replaces the directory's earlier one: its event files too.
            shutil.rmtree(self.out / TENSORBOARD_DIR, ignore_errors=True)
        return 0, self.program.init(self.seeds, self.hp)

    def open_loggers(self, done: int) -> list[RunLogger]:
        """The run loggers of this process, continuing after update `done`: TensorBoard
        (purging what an interrupted process logged after the checkpoint) and W&B runs (new
        ones, one per seed, started now). Process 0 alone logs."""
        if not self.writes_files:
            return []
        loggers: list[RunLogger] = []
        if self.tensorboard:
            loggers.append(TensorBoardWriter(
                self.out / TENSORBOARD_DIR,
                purge_after=done * self.config.env_steps_per_update if self.resume else None))
        if self.wandb is not None:
            runs = WandbRuns(self.wandb, group=self.out.resolve().name, directory=self.out)
            loggers.append(runs)
            try:
                for seed in self.seeds:
                    runs.open(seed_run(seed), {**self.config.to_dict(), "seed": seed,
                                               "run_dir": str(self.out),
                                               "first_update": done})
            except BaseException:
                runs.close()
                raise
        return loggers

    def train(self, plot: bool = True) -> dict[str, Any]:
        cfg = self.config
        done, state = self.initial_state()
        if self.resume and self.writes_files:
            self.writer.truncate_after(done * cfg.env_steps_per_update)
            # The run may have been extended (--resume DIR --total-steps N): config.json
            # describes the run as it continues, so a later plain --resume goes on from here.
            atomic_write_json(self.out / "config.json", cfg.to_dict())
        if self.resume:
            self.log(f"resuming {self.out} at update {done} of {cfg.num_updates}")
        advice = self.program.batching_note(cfg.num_seeds)
        if advice:
            self.log(advice)
        self.log(f"{cfg.algo} on {cfg.env}: {cfg.num_seeds} seed(s) x {cfg.num_envs} envs on "
                 f"{self.mesh.devices.size} {self.program.platform} device(s), "
                 f"{cfg.num_updates} updates of {cfg.env_steps_per_update} env steps")
        self._first_update = done
        self._last_records: list[dict[str, Any]] = []
        self._episode_figures = {}
        start = time.perf_counter()

        def compiled(updates: int, seconds: float) -> None:
            self.log(f"compiled {updates} update(s) per call in {seconds:.1f} s")
            self.watchdog.beat(f"the first call of the freshly compiled {updates} update(s)")

        self._loggers = self.open_loggers(done)
        try:
            with self.watchdog:
                self.watchdog.beat(f"compiling and running the first chunk after update {done}")
                self._train_chunks(state, done, compiled, start)
        finally:
            for logger in self._loggers:
                logger.close()
        self.checkpointer.close()
        records = read_metrics(self.writer.path) if self.writes_files else []
        if plot and records:
            plot_training(records, self.out / "training.png", cfg.cost_limit,
                          title=f"{cfg.algo} on {cfg.env}")
        return self.summary(self._last_records)

    def _train_chunks(self, state: TrainState, done: int, compiled, start: float) -> None:
        cfg = self.config
        for chunk in self.program.chunks(state, self.hp, self.seeds, done, compiled):
            sps = chunk.updates * cfg.env_steps_per_update * cfg.num_seeds / chunk.seconds
            last_records = log_records(chunk.metrics, chunk.env_steps,
                                       {"sps": sps, "update": chunk.updates_done},
                                       seeds=self.seeds)
            if self.writes_files:
                self.writer.write(last_records)
            for logger in self._loggers:
                for record in last_records:
                    logger.write(seed_run(record["seed"]), [record])
                logger.flush()  # a running `tensorboard --logdir` sees every chunk
            log_index = chunk.updates_done // cfg.updates_per_log
            if log_index % cfg.checkpoint_every == 0 or chunk.updates_done == cfg.num_updates:
                self.checkpointer.save(chunk.updates_done, chunk.state)
            self._progress(chunk.updates_done, chunk.env_steps, last_records, sps,
                           time.perf_counter() - start - self.compile_seconds)
            self._last_records = last_records
            self.watchdog.beat(f"the chunk after update {chunk.updates_done}")

    def _progress(self, done, env_steps, records, sps, wall) -> None:
        cfg = self.config
        self._episode_figures = carry_episode_figures(self._episode_figures, records)
        figures = [self._episode_figures.get(r["seed"], {}) for r in records]

        def column(values: list[float], width: int, digits: int) -> str:
            return f"{np.mean(values):{width}.{digits}f}" if values else "-".rjust(width)

        def mean(key: str, width: int, digits: int) -> str:
            if key in EPISODE_KEYS:
                return column([f[key] for f in figures if key in f], width, digits)
            return column([r[key] for r in records
                           if r.get(key) is not None and np.isfinite(r[key])], width, digits)

        done_now = done - self._first_update
        remaining = wall / done_now * (cfg.num_updates - done) if done_now else 0.0
        # Episode return and cost appear as soon as full episodes finish (after one episode
        # length per env), then stay (`carry_episode_figures`); before, "rate" (reward per
        # step x episode length) shows the trend; "est" is the cost the multiplier saw (the
        # rate x episode length until episodes finish).
        diverged = diverged_seeds(records)
        length = self.env.episode_length
        rate_return = [r["reward_rate"] * length for r in records
                       if r.get("reward_rate") is not None]
        est_return = f"{np.mean(rate_return):7.2f}" if rate_return else "-".rjust(7)
        self.log(f"[{done:>5}/{cfg.num_updates}] steps {env_steps:>11,} | "
                 f"return {mean('episode_return', 8, 2)} (rate {est_return}) | "
                 f"cost {mean('episode_cost', 7, 2)} "
                 f"(est {mean('episode_cost_estimate', 7, 2)}) | "
                 f"lambda {mean('lagrange_multiplier', 6, 3)} | {sps:10,.0f} steps/s | "
                 f"eta {remaining:5.0f}s"
                 + (f" | DIVERGED seed(s) {diverged}" if diverged else ""))
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
        out["diverged_seeds"] = diverged_seeds(records)  # their figures are null, not means
        out["compile_seconds"] = round(self.compile_seconds, 1)
        return out


def carry_episode_figures(known: dict[int, dict[str, float]],
                          records: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per seed, its latest finite episode return and cost (EPISODE_KEYS) for the progress
    line: this log point's, else those of an earlier one. A log point's figures come from the
    full episodes of the last `episode_window` updates, which can hold none although episodes
    completed before (long episodes in lockstep, or more updates per log point than the
    window); the line then shows the episodes completed last rather than "-". A diverged seed
    has none. metrics.jsonl and the multiplier are unaffected."""
    figures = {seed: dict(values) for seed, values in known.items()}
    for record in records:
        seed = record["seed"]
        if record.get("diverged") == 1.0:
            figures.pop(seed, None)
            continue
        latest = figures.setdefault(seed, {})
        for key in EPISODE_KEYS:
            value = record.get(key)
            if value is not None and math.isfinite(value):
                latest[key] = float(value)
    return figures


def diverged_seeds(records: list[dict[str, Any]]) -> list[int]:
    """The seeds whose run became non-finite (flagged `diverged` in their records)."""
    return sorted(r["seed"] for r in records if r.get("diverged") == 1.0)
