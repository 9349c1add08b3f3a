"""Experiments over the trainer: sweep grids run vmapped per compiled program, a tidy results
table that survives interruption, statistics over seeds, learning-curve and Pareto plots."""

from shapo_jax.experiments.grid import (
    HP_FIELDS,
    Group,
    Member,
    SweepSpec,
    assign_groups,
    expand_grid,
    group_members,
)
from shapo_jax.experiments.plots import plot_learning_curves, plot_pareto, plot_sweep
from shapo_jax.experiments.stats import (
    against_baselines,
    confidence_band,
    difference_band,
    final_metrics,
    learning_curves,
    pareto_front,
    student_t_quantile,
    summarize_runs,
)
from shapo_jax.experiments.sweep import SweepResult, member_run_name, run_sweep
from shapo_jax.experiments.table import COLUMNS, read_table, table_paths

__all__ = [
    "COLUMNS",
    "HP_FIELDS",
    "Group",
    "Member",
    "SweepResult",
    "SweepSpec",
    "against_baselines",
    "assign_groups",
    "confidence_band",
    "difference_band",
    "expand_grid",
    "final_metrics",
    "group_members",
    "learning_curves",
    "member_run_name",
    "pareto_front",
    "plot_learning_curves",
    "plot_pareto",
    "plot_sweep",
    "read_table",
    "run_sweep",
    "student_t_quantile",
    "summarize_runs",
    "table_paths",
]
