"""Figures of a sweep: learning curves with confidence bands over seeds, and Pareto plots of
final return against final episode cost and against cumulative training cost (per task)."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shapo_jax.experiments.grid import HP_FIELDS  # noqa: E402
from shapo_jax.experiments.stats import (  # noqa: E402
    Setting,
    against_baselines,
    diverged_runs,
    final_metrics,
    healthy_rows,
    learning_curves,
    pareto_front,
    programs_per_setting,
    setting_of,
    summarize_runs,
)
from shapo_jax.experiments.table import read_table  # noqa: E402
from shapo_jax.io import atomic_save, atomic_write_text  # noqa: E402
from shapo_jax.metrics.plots import step_axis  # noqa: E402
from shapo_jax.training.config import TrainConfig  # noqa: E402
from shapo_jax.training.hyperparameters import traced_setting  # noqa: E402

CURVE_PANELS = (("episode_return", "episode return"), ("episode_cost", "episode cost"),
                ("cumulative_cost", "cumulative training cost"),
                ("lagrange_multiplier", "Lagrange multiplier"))
# SHAPO's reweighting diagnostic (docs/algorithms.md §9): the importance weight
# pi_perturbed / pi on the batch's cost-incurring and cost-free samples, its geometric mean
# (the paper's first-order weight, insensitive to a few large ratios) and its arithmetic mean
REWEIGHTING_PANELS = (("shapo_geometric_weight_costly", "geometric mean weight, costly"),
                      ("shapo_geometric_weight_safe", "geometric mean weight, cost-free"),
                      ("shapo_weight_costly", "mean weight, costly samples"),
                      ("shapo_weight_safe", "mean weight, cost-free samples"))


def varying_fields(settings: Sequence[Setting]) -> list[str]:
    """The hyperparameter fields that take more than one value among `settings`."""
    return [f for i, f in enumerate(HP_FIELDS) if len({s[2][i] for s in settings}) > 1]


def setting_label(setting: Setting, fields: Sequence[str]) -> str:
    """'algo field=value ...' naming the setting by the fields that vary in the figure."""
    values = dict(zip(HP_FIELDS, setting[2], strict=True))
    config = TrainConfig(algo=setting[1])  # which settings the algorithm reads
    parts = [f"{traced_setting(f).short}={values[f]:g}" for f in fields
             if traced_setting(f).used_by(config)]
    return " ".join([setting[1], *parts])


def save_figure(fig: plt.Figure, stem: str | os.PathLike,
                formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save `fig` as stem.<fmt> for each format (atomically: temporary file, rename)."""
    stem = Path(stem)
    try:
        return [
            atomic_save(stem.with_name(f"{stem.name}.{fmt}"),
                        lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight"))
            for fmt in formats
        ]
    finally:
        plt.close(fig)


def _colors(labels: Sequence[Any]) -> dict[Any, Any]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _cost_limits(rows: list[dict[str, Any]]) -> list[float]:
    return sorted({float(r["cost_limit"]) for r in rows if math.isfinite(r["cost_limit"])})


def plot_learning_curves(rows: list[dict[str, Any]], env: str, stem: str | os.PathLike,
                         confidence: float = 0.95,
                         formats: Sequence[str] = ("png", "pdf"),
                         panels: Sequence[tuple[str, str]] = CURVE_PANELS,
                         all_settings: Sequence[Setting] | None = None) -> list[Path]:
    """Each of `panels` (metric, axis label; by default return, episode cost, cumulative cost
    and lambda) against env steps on `env`: the mean over seeds per (algo, setting) and its
    `confidence` band. Colours and labels come from `all_settings` (default: those of `rows`),
    so that a figure of some of a sweep's settings draws each as the sweep's other figures do."""
    rows = [r for r in rows if r["env"] == env]
    if not rows:
        raise ValueError(f"no rows for environment {env!r}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    settings = sorted({setting_of(r) for r in rows})
    all_settings = sorted(all_settings or settings)
    missing = sorted(set(settings) - set(all_settings))
    if missing:
        raise ValueError(f"all_settings lacks the settings {missing} of the rows")
    fields, colors = varying_fields(all_settings), _colors(all_settings)
    for key, label in panels:
        curves = learning_curves(rows, key, confidence)
        ax = axes[[k for k, _ in panels].index(key)]
        for setting in settings:
            steps, mean, low, high = curves[setting]
            ax.plot(steps, mean, color=colors[setting], lw=1.5,
                    label=setting_label(setting, fields))
            ax.fill_between(steps, low, high, color=colors[setting], alpha=0.2, lw=0)
        if key == "episode_cost":
            for limit in _cost_limits(rows):
                ax.axhline(limit, color="k", ls="--", lw=1)
        step_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    seeds = len({r["seed"] for r in rows})
    fig.suptitle(f"{env}: mean and {100 * confidence:g}% confidence band over {seeds} seed(s)")
    fig.tight_layout()
    return save_figure(fig, stem, formats)


def _front_line(ax: plt.Axes, x: np.ndarray, y: np.ndarray, color: Any) -> None:
    on = pareto_front(x, y)
    if on.any():
        order = np.argsort(x[on])
        ax.step(x[on][order], y[on][order], where="post", color=color, lw=1.2, alpha=0.8)


def plot_pareto(summary: list[dict[str, Any]], env: str, stem: str | os.PathLike,
                formats: Sequence[str] = ("png", "pdf"), annotate: bool = True,
                confidence: float = 0.95) -> list[Path]:
    """Final return against final episode cost (left) and against cumulative training cost
    (right) on `env`: one point per (algo, setting) with confidence bars over seeds, and each
    algorithm's Pareto front (lower cost, higher return) drawn as a staircase."""
    summary = [s for s in summary if s["env"] == env]
    if not summary:
        raise ValueError(f"no summary rows for environment {env!r}")
    algos = sorted({s["algo"] for s in summary})
    colors = _colors(algos)
    settings = [(s["env"], s["algo"], tuple(s[f] for f in HP_FIELDS)) for s in summary]
    fields = varying_fields(settings)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for ax, (cost_key, xlabel) in zip(axes, [("episode_cost", "final episode cost"),
                                             ("cumulative_cost", "cumulative training cost")],
                                      strict=True):
        for algo in algos:
            mine = [s for s in summary if s["algo"] == algo]
            x = np.array([s[cost_key] for s in mine])
            y = np.array([s["episode_return"] for s in mine])
            xerr = np.abs(np.array([[s[cost_key] - s[f"{cost_key}_low"],
                                     s[f"{cost_key}_high"] - s[cost_key]] for s in mine]).T)
            yerr = np.abs(np.array([[s["episode_return"] - s["episode_return_low"],
                                     s["episode_return_high"] - s["episode_return"]]
                                    for s in mine]).T)
            ax.errorbar(x, y, xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), fmt="o",
                        color=colors[algo], ms=5, capsize=2, lw=0.8, label=algo)
            _front_line(ax, x, y, colors[algo])
            if annotate and fields:
                for s, xi, yi in zip(mine, x, y, strict=True):
                    setting = (s["env"], s["algo"], tuple(s[f] for f in HP_FIELDS))
                    text = setting_label(setting, fields).removeprefix(algo).strip()
                    if text:
                        ax.annotate(text, (xi, yi), fontsize=6, xytext=(3, 3),
                                    textcoords="offset points")
        if cost_key == "episode_cost":
            for limit in sorted({s["cost_limit"] for s in summary}):
                ax.axvline(limit, color="k", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final episode return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    seeds = sorted({s["seeds"] for s in summary})
    fig.suptitle(f"{env}: Pareto fronts (bars: {100 * confidence:g}% CI over "
                 f"{'/'.join(map(str, seeds))} seeds)")
    fig.tight_layout()
    return save_figure(fig, stem, formats)


def write_records_csv(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Records with one set of keys (a summary's: one per setting) as a CSV file, atomically."""
    if not records:
        raise ValueError(f"no records to write to {path}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return atomic_write_text(path, buffer.getvalue())


def plot_sweep(*sources: str | os.PathLike, out: str | os.PathLike,
               final_fraction: float = 0.1, confidence: float = 0.95,
               formats: Sequence[str] = ("png", "pdf"),
               pool_programs: bool = False) -> list[Path]:
    """Every figure of a sweep (curves_<env>, pareto_<env>, and reweighting_<env> where SHAPO
    ran) plus summary.csv under `out`, and against_baseline.csv where a SHAPO setting and its
    Lagrangian baseline both ran (`stats.against_baselines`: SHAPO - baseline, Welch intervals,
    the baseline taken at the SHAPO setting's budget where it ran further).

    A setting (task, algorithm, traced settings) whose runs come from several programs (the
    sources' static configurations differ: another batch, preset or budget, or a table written
    by another version; checkpoint and evaluation intervals do not count, though with other
    evaluation intervals the final eval figures average other numbers of evaluations) is
    refused unless `pool_programs`, which pools their seeds into one mean."""
    rows = read_table(*sources)
    if not rows:
        raise ValueError(f"no complete rows in {', '.join(map(str, sources))}")
    mixed = programs_per_setting(rows)
    if mixed and not pool_programs:
        fields = varying_fields(list(mixed))
        described = "; ".join(f"{setting_label(s, fields)} on {s[0]}: {', '.join(ids)}"
                              for s, ids in mixed.items())
        raise ValueError(f"runs of the same algorithm, task and settings come from different "
                         f"programs ({described}): their static configurations differ in some "
                         "field, or were written by another version. Plot each source on its "
                         "own, or pool their seeds into one mean anyway (pool_programs=True, "
                         "shapo-plot --pool-programs)")
    diverged = diverged_runs(rows)
    if diverged:
        warnings.warn(f"left out of every figure and summary: {len(diverged)} diverged run(s) "
                      f"{sorted(diverged)}", stacklevel=2)
    dropped: dict[Setting, int] = {}
    for run_id in diverged:
        setting = setting_of(next(r for r in rows if r["run_id"] == run_id))
        dropped[setting] = dropped.get(setting, 0) + 1
    rows = healthy_rows(rows)
    if not rows:
        raise ValueError("every run of the sweep diverged: nothing to plot")
    finals = final_metrics(rows, final_fraction)
    summary = summarize_runs(finals, confidence)
    for record in summary:  # the seeds that diverged, left out of this setting's figures
        record["diverged"] = dropped.get(setting_of(record), 0)
    out = Path(out)
    paths = [write_records_csv(summary, out / "summary.csv")]
    differences = against_baselines(finals, confidence, rows, final_fraction)
    if differences:
        paths.append(write_records_csv(differences, out / "against_baseline.csv"))
    else:  # not one left from an earlier call on other sources
        (out / "against_baseline.csv").unlink(missing_ok=True)
    for env in sorted({r["env"] for r in rows}):
        settings = sorted({setting_of(r) for r in rows if r["env"] == env})
        paths += plot_learning_curves(rows, env, out / f"curves_{env}", confidence, formats)
        paths += plot_pareto(summary, env, out / f"pareto_{env}", formats,
                             confidence=confidence)
        shapo_runs = {r["run_id"] for r in rows if r["env"] == env and any(
            math.isfinite(r.get(key, math.nan)) for key, _ in REWEIGHTING_PANELS)}
        reweighted = [r for r in rows if r["run_id"] in shapo_runs]  # whole runs: gaps stay
        if reweighted:
            paths += plot_learning_curves(reweighted, env, out / f"reweighting_{env}",
                                          confidence, formats, panels=REWEIGHTING_PANELS,
                                          all_settings=settings)
    return paths
