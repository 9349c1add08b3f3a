"""The sweep's tidy table: one CSV row per run and log point, appended as each log chunk
finishes, plus a completion manifest.

Durability: every append writes whole rows in one call, then flushes and fsyncs; a run is
recorded complete in the manifest (`complete.jsonl`, also fsynced) only after all its rows
are on disk. When a sweep restarts, the table is rewritten atomically (temporary file and
rename) keeping only the rows of complete runs, so a torn last line or the rows of an
interrupted run are dropped and that run is trained again from scratch: nothing is lost and
nothing is duplicated.

Under `jax.distributed` every process writes its own pair of files, `table.p<i>.csv` and
`complete.p<i>.jsonl`; readers take all of them.

Readers also take shapo-train run directories (config.json and metrics.jsonl, one record per
seed and log point), alone or as the subdirectories of a study directory: a long study runs
each setting as a resumable shapo-train run (study/run_study_10m.sh) rather than as a sweep,
whose interrupted runs start again from scratch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shapo_jax.experiments.grid import HP_FIELDS, program_id
from shapo_jax.io import append_durably, append_jsonl, atomic_write_text, read_jsonl

ID_COLUMNS = ("group_id", "run_id", "algo", "env")
INT_COLUMNS = ("seed", "update", "env_steps")
METRIC_COLUMNS = (
    "episode_return", "episode_cost", "cost_rate", "cumulative_cost", "lagrange_multiplier",
    "eval_return", "eval_cost", "episode_length", "episodes_completed", "policy_kl",
    "shapo_kl", "shapo_kl_max", "shapo_weight_costly", "shapo_weight_safe",
    "shapo_geometric_weight_costly", "shapo_geometric_weight_safe", "sps", "diverged",
)
COLUMNS: tuple[str, ...] = ID_COLUMNS + HP_FIELDS + INT_COLUMNS + METRIC_COLUMNS
FLOAT_COLUMNS = HP_FIELDS + METRIC_COLUMNS


def _suffix(process_index: int, process_count: int) -> str:
    return "" if process_count <= 1 else f".p{process_index}"


def table_path(out: str | Path, process_index: int = 0, process_count: int = 1) -> Path:
    return Path(out) / f"table{_suffix(process_index, process_count)}.csv"


def manifest_path(out: str | Path, process_index: int = 0, process_count: int = 1) -> Path:
    return Path(out) / f"complete{_suffix(process_index, process_count)}.jsonl"


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a shapo-train run directory (config.json and metrics.jsonl)."""
    path = Path(path)
    return (path / "config.json").is_file() and (path / "metrics.jsonl").is_file()


def run_dirs(source: str | Path) -> list[Path]:
    """`source` itself if it is a run directory, else its subdirectories that are."""
    source = Path(source)
    if is_run_dir(source):
        return [source]
    return sorted(p for p in source.iterdir() if is_run_dir(p)) if source.is_dir() else []


def run_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The table rows of a shapo-train run directory: one per seed and log point, run_id
    '<parent>/<directory>/seed_<seed>' (unique across study directories, whose parts share
    names) and group_id its program, as a sweep names it (`grid.program_id`). `sps` is per
    seed, as in a sweep's rows (metrics.jsonl holds the rate of all seeds together)."""
    from shapo_jax.training.config import TrainConfig  # the config that wrote the records

    run_dir = Path(run_dir).resolve()
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    hp = config.traced_values()  # as a sweep records them: unused settings at their off value
    name, program = f"{run_dir.parent.name}/{run_dir.name}", program_id(config)
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl")
               if isinstance(r, dict) and "seed" in r and "env_steps" in r]
    seeds_at = Counter(record["env_steps"] for record in records)
    rows = []
    for record in records:
        env_steps = int(record["env_steps"])
        row: dict[str, Any] = {column: math.nan for column in FLOAT_COLUMNS}
        row.update(group_id=program, run_id=f"{name}/seed_{record['seed']}",
                   algo=config.algo, env=config.env, **hp, seed=int(record["seed"]),
                   update=int(record.get("update", env_steps // config.env_steps_per_update)),
                   env_steps=env_steps)
        for column in METRIC_COLUMNS:
            value = record.get(column)
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[column] = float(value) if math.isfinite(value) else math.nan
        row["sps"] /= seeds_at[env_steps]
        rows.append(row)
    return rows


def table_paths(source: str | Path) -> list[Path]:
    """The table files of a sweep directory (all processes), or [source] for a CSV file."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(source.glob("table*.csv"))
        if not paths:
            raise FileNotFoundError(f"no table*.csv and no run directory in {source}: not a "
                                    "sweep, run or study directory")
        return paths
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    return [source]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def format_rows(rows: Iterable[dict[str, Any]], header: bool = False) -> str:
    """CSV text of `rows` (columns COLUMNS; missing or non-finite values are empty cells)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_format(row.get(column)) for column in COLUMNS])
    return buffer.getvalue()


def _parse(row: list[str], header: tuple[str, ...]) -> dict[str, Any] | None:
    if len(row) != len(header):
        return None
    out: dict[str, Any] = {column: math.nan for column in FLOAT_COLUMNS}
    try:
        for column, text in zip(header, row, strict=True):
            if column in INT_COLUMNS:
                out[column] = int(text)
            elif column in FLOAT_COLUMNS:
                out[column] = float(text) if text else math.nan
            else:
                out[column] = text
    except ValueError:
        return None
    return out


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Complete rows of one table file (a torn or malformed line is skipped). Tables written
    before a metric column existed read with that column NaN."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return []
        header = tuple(header)
        required = set(ID_COLUMNS + HP_FIELDS + INT_COLUMNS)
        if not required <= set(header) or not set(header) <= set(COLUMNS):
            raise ValueError(f"{path}: unexpected header; expected the columns {list(COLUMNS)}")
        return [parsed for parsed in (_parse(r, header) for r in reader) if parsed is not None]


def read_table(*sources: str | Path) -> list[dict[str, Any]]:
    """All rows of one or more sweep directories, CSV files, shapo-train run directories or
    directories of run directories (NaN for empty metric cells)."""
    rows: list[dict[str, Any]] = []
    for source in sources:
        runs = [] if Path(source).is_dir() and any(Path(source).glob("table*.csv")) \
            else run_dirs(source)
        if runs:
            for run_dir in runs:
                rows.extend(run_rows(run_dir))
            continue
        for path in table_paths(source):
            rows.extend(read_rows(path))
    return rows


class TableWriter:
    """Appends whole rows to one table file, flushed and fsynced per call."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            atomic_write_text(self.path, format_rows([], header=True))
            return
        with open(self.path, newline="") as handle:
            header = tuple(next(csv.reader(handle), ()))
        if header != COLUMNS:  # an older table: rewrite it with today's columns first
            atomic_write_text(self.path, format_rows(read_rows(self.path), header=True))

    def append(self, rows: list[dict[str, Any]]) -> None:
        append_durably(self.path, format_rows(rows), newline="")

    def keep_runs(self, run_ids: set[str]) -> int:
        """Atomically rewrite the table with only the rows of `run_ids`; returns rows dropped."""
        rows = read_rows(self.path)
        kept = [row for row in rows if row["run_id"] in run_ids]
        with open(self.path) as handle:
            lines = sum(1 for _ in handle) - 1
        if lines != len(kept):
            atomic_write_text(self.path, format_rows(kept, header=True))
        return lines - len(kept)


class Manifest:
    """The runs this process completed, one JSON object per line (fsynced)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def completed(self) -> set[str]:
        return _read_manifest(self.path)

    def mark_complete(self, entries: list[dict[str, Any]]) -> None:
        append_jsonl(self.path, entries)


def _read_manifest(path: Path) -> set[str]:
    done: set[str] = set()
    if path.exists():
        for entry in read_jsonl(path):
            if isinstance(entry, dict) and "run_id" in entry:
                done.add(entry["run_id"])
    return done


def completed_runs(out: str | Path) -> set[str]:
    """Runs recorded complete by any process of the sweep in `out`."""
    done: set[str] = set()
    for path in sorted(Path(out).glob("complete*.jsonl")):
        done |= _read_manifest(path)
    return done
