"""Running a sweep: each group's members trained by one `TrainingProgram` (the program
shapo-train uses: members vmapped in one compiled program, the env axis sharded over this
process's devices), rows appended to the table after every log chunk, progress on stderr,
and resumption of an interrupted sweep. Every member also gets a TensorBoard run of its own,
`OUT/tensorboard/<member_run_name>/` (the metrics shapo-train logs, against env steps), and,
with `wandb`, a W&B run of that name, grouped by the sweep directory's name.

Resumption: a run counts as done only once its whole group finished and the manifest says so
(see `table`). Restarting `run_sweep` on the same directory skips every complete run and
trains the others again from scratch (their partial rows are dropped first); no per-group
checkpoint is kept, so at most one group's progress per process is repeated. A run trained
again starts its TensorBoard run afresh (its event directory is replaced) and a new W&B run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
from jax.sharding import Mesh

from shapo_jax.experiments.grid import (
    Group,
    Member,
    SweepSpec,
    assign_groups,
    expand_grid,
    group_members,
)
from shapo_jax.experiments.stats import diverged_runs
from shapo_jax.experiments.table import (
    METRIC_COLUMNS,
    Manifest,
    TableWriter,
    completed_runs,
    manifest_path,
    read_rows,
    table_path,
)
from shapo_jax.io import atomic_write_json
from shapo_jax.metrics import (
    RunLogger,
    TensorBoardWriter,
    WandbRuns,
    WandbSettings,
    import_wandb,
    log_records,
)
from shapo_jax.metrics.tensorboard import TENSORBOARD_DIR
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.devices import make_mesh
from shapo_jax.training.hyperparameters import Hyperparameters
from shapo_jax.training.program import member_hyperparameters, program_for
from shapo_jax.training.watchdog import Watchdog


def group_hyperparameters(members: tuple[Member, ...] | list[Member]) -> Hyperparameters:
    """The members' traced settings stacked on a leading axis."""
    return member_hyperparameters([m.hp_dict for m in members])


def _setting_text(value: float) -> str:
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def member_run_name(member: Member, axes: tuple[str, ...] | list[str]) -> str:
    """The member's run name for TensorBoard and W&B: algorithm, task, its values on the
    sweep's grid `axes` and its seed, e.g. `shapo_ppo_lag-TinyHazardNav-delta_down=0.005-seed_1`.
    The other settings are the same for every member of a task and algorithm, so the name is
    unique in the sweep."""
    settings = [f"{axis}={_setting_text(member.hp_dict[axis])}" for axis in sorted(axes)]
    return "-".join([member.algo, member.env, *settings, f"seed_{member.seed}"])


def _member_config(member: Member, out: Path) -> dict[str, Any]:
    return {**member.full_config().to_dict(), "run_id": member.run_id,
            "group_id": member.group_id, "sweep_dir": str(out)}


class Progress:
    """A plain-text progress bar on a stream (redrawn in place on a terminal)."""

    def __init__(self, total_steps: int, total_runs: int, stream: TextIO | None = sys.stderr,
                 width: int = 24):
        self.total_steps, self.total_runs = max(total_steps, 1), total_runs
        self.stream, self.width = stream, width
        self.steps = 0
        self.runs = 0
        self.start = time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, steps: int = 0, runs: int = 0, label: str = "", sps: float = 0.0) -> None:
        self.steps += steps
        self.runs += runs
        if self.stream is None:
            return
        fraction = min(self.steps / self.total_steps, 1.0)
        filled = int(round(fraction * self.width))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else math.nan
        speed = f" | {sps:,.0f} steps/s" if sps else ""
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}% "
                f"runs {self.runs}/{self.total_runs} | {label}{speed} | "
                f"{elapsed:,.0f}s elapsed, eta {eta:,.0f}s")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A line of its own (a warning) above the bar."""
        if self.stream is not None:
            self.stream.write(("\r" if self.tty else "") + message + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclasses.dataclass
class SweepResult:
    """What a call of `run_sweep` did."""

    out: Path
    table: Path
    groups: int  # groups this process ran (at least partly)
    runs_trained: int
    runs_skipped: int  # already complete
    rows_dropped: int  # rows of interrupted runs removed before restarting them
    diverged_runs: list[str] = dataclasses.field(default_factory=list)  # of the whole table


ChunkCallback = Callable[[Group, int, list[dict[str, Any]]], None]


def _rows(group_members: tuple[Member, ...], metrics: dict[str, np.ndarray], done: int,
          config: TrainConfig, sps: float) -> list[dict[str, Any]]:
    env_steps = done * config.env_steps_per_update
    rows = []
    for i, member in enumerate(group_members):
        row: dict[str, Any] = {
            "group_id": member.group_id, "run_id": member.run_id, "algo": member.algo,
            "env": member.env, **member.hp_dict, "seed": member.seed, "update": done,
            "env_steps": env_steps, "sps": sps,
        }
        for column in METRIC_COLUMNS:
            if column in metrics:
                row[column] = float(metrics[column][i])
        rows.append(row)
    return rows


def run_group(group: Group, members: tuple[Member, ...], mesh: Mesh, writer: TableWriter,
              manifest: Manifest, progress: Progress | None = None,
              on_chunk: ChunkCallback | None = None,
              loggers: tuple[RunLogger, ...] = (), names: list[str] | None = None) -> None:
    """Train `members` (part or all of `group`) in one program, appending rows per log chunk
    and marking the runs complete at the end. Each `loggers` gets every member's records (the
    metrics shapo-train logs) as the run named `names[i]` (default: the run ids)."""
    config = group.config
    names = [m.run_id for m in members] if names is None else list(names)
    if len(names) != len(members):
        raise ValueError(f"run_group: {len(names)} names for {len(members)} members")
    program = program_for(config, mesh)
    advice = program.batching_note(len(members))
    if advice and progress is not None:
        progress.note(f"{group.label}: {advice}")
    hp = group_hyperparameters(members)
    seeds = [m.seed for m in members]
    state = program.init(seeds, hp)
    done = 0
    flagged: set[str] = set()
    for chunk in program.chunks(state, hp, seeds):
        done = chunk.updates_done
        for member, diverged in zip(members, chunk.metrics["diverged"], strict=True):
            if diverged == 1.0 and member.run_id not in flagged:
                flagged.add(member.run_id)
                if progress is not None:
                    progress.note(f"{group.label}: run {member.run_id} (seed {member.seed}, "
                                  f"{member.hp_dict}) diverged at update {done}: its figures "
                                  "are null from here on")
        run_steps = chunk.updates * config.env_steps_per_update
        rows = _rows(members, chunk.metrics, done, config, run_steps / chunk.seconds)
        writer.append(rows)
        if loggers:
            records = log_records(chunk.metrics, chunk.env_steps,
                                  {"sps": run_steps / chunk.seconds, "update": done},
                                  seeds=[m.seed for m in members])
            for logger in loggers:
                for name, record in zip(names, records, strict=True):
                    logger.write(name, [record])
                logger.flush()
        if progress is not None:
            progress.update(steps=run_steps * len(members),
                            label=f"{group.label} {done}/{config.num_updates}",
                            sps=run_steps * len(members) / chunk.seconds)
        if on_chunk is not None:
            on_chunk(group, done, rows)
    env_steps = done * config.env_steps_per_update
    manifest.mark_complete([
        {"run_id": m.run_id, "group_id": m.group_id, "env_steps": env_steps} for m in members
    ])
    if progress is not None:
        progress.update(runs=len(members), label=f"{group.label} done")


def plan(spec: SweepSpec, process_index: int = 0, process_count: int = 1) -> list[Group]:
    """This process's groups of the sweep, before skipping complete runs."""
    groups = group_members(expand_grid(spec), spec.max_group_size)
    return assign_groups(groups, process_index, process_count)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    devices: list | None = None,
    progress: TextIO | None = sys.stderr,
    on_chunk: ChunkCallback | None = None,
    stall_timeout: float | None = None,
    tensorboard: bool = True,
    wandb: WandbSettings | None = None,
) -> SweepResult:
    """Run (or resume) the sweep `spec` in directory `out`; see the module docstring.

    process_index/process_count default to jax.process_index()/jax.process_count(); each
    process runs its strided share of the groups on `devices` (default: its local devices).
    `on_chunk(group, updates_done, rows)` is called after each log chunk's rows are written.
    `stall_timeout`: seconds without a finished chunk after which the process reports and
    exits (`Watchdog`; None: never). `tensorboard`: an event directory per member under
    `out/tensorboard/`; `wandb`: a W&B run per member (needs the wandb package).
    """
    if wandb is not None:
        import_wandb()  # missing or too old: a ValueError now, before anything compiles
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if index == 0:
        atomic_write_json(out / "sweep.json", spec.to_dict())
    mesh = make_mesh(jax.local_devices() if devices is None else devices)
    groups = plan(spec, index, count)

    writer = TableWriter(table_path(out, index, count))
    manifest = Manifest(manifest_path(out, index, count))
    # Own rows are trusted only for runs this process itself recorded complete.
    dropped = writer.keep_runs(manifest.completed())
    complete = completed_runs(out)
    pending = [(g, tuple(m for m in g.members if m.run_id not in complete)) for g in groups]
    pending = [(g, members) for g, members in pending if members]
    skipped = sum(len(g.members) for g in groups) - sum(len(m) for _, m in pending)

    total_steps = sum(len(m) * g.config.num_updates * g.config.env_steps_per_update
                      for g, m in pending)
    bar = Progress(total_steps, sum(len(m) for _, m in pending), progress)
    if progress is not None:
        progress.write(f"sweep {out}: {len(pending)} group(s), "
                       f"{sum(len(m) for _, m in pending)} run(s) to train, {skipped} complete, "
                       f"on {mesh.devices.size} {mesh.devices.flat[0].platform} device(s)"
                       f"{f' (process {index} of {count})' if count > 1 else ''}\n")
    watchdog = Watchdog(stall_timeout, advice=(
        f"Run the same shapo-sweep command again to resume {out}; raise --stall-timeout if a "
        "chunk of updates legitimately takes longer."))

    def chunk_done(group: Group, done: int, rows: list[dict]) -> None:
        watchdog.beat(f"{group.label}: the chunk after update {done}")
        if on_chunk is not None:
            on_chunk(group, done, rows)

    def group_loggers(members: tuple[Member, ...], names: list[str]) -> list[RunLogger]:
        loggers: list[RunLogger] = []
        if tensorboard:
            events = TensorBoardWriter(out / TENSORBOARD_DIR)
            for name in names:  # trained from scratch: any earlier events are stale
                events.remove_run(name)
            loggers.append(events)
        if wandb is not None:
            runs = WandbRuns(wandb, group=out.resolve().name, directory=out)
            loggers.append(runs)
            try:
                for member, name in zip(members, names, strict=True):
                    runs.open(name, _member_config(member, out))
            except BaseException:
                for logger in loggers:
                    logger.close()
                raise
        return loggers

    axes = tuple(spec.grid)
    try:
        with watchdog:
            for group, members in pending:
                watchdog.beat(f"{group.label}: compiling and running its first chunk")
                names = [member_run_name(m, axes) for m in members]
                loggers = group_loggers(members, names)
                try:
                    run_group(group, members, mesh, writer, manifest, bar, chunk_done,
                              loggers=tuple(loggers), names=names)
                finally:
                    for logger in loggers:
                        logger.close()
    finally:
        bar.close()
    diverged = sorted(diverged_runs(read_rows(writer.path)))
    if diverged and progress is not None:
        progress.write(f"sweep {out}: {len(diverged)} diverged run(s), left out of figures and "
                       f"summaries: {diverged}\n")
    return SweepResult(out=out, table=writer.path, groups=len(pending),
                       runs_trained=sum(len(m) for _, m in pending), runs_skipped=skipped,
                       rows_dropped=dropped, diverged_runs=diverged)
