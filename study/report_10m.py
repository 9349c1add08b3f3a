#!/usr/bin/env python
"""The 10M-step SafetyPointGoal1 study's figures, summary.csv and Markdown table (RESULTS.md).

    .venv/bin/python study/report_10m.py [STUDY_DIR] [--out FIGURES_DIR] [--against OTHER_STUDY]

(default study/runs/SafetyPointGoal1-10M into study/figures/SafetyPointGoal1-10M; the parts
at our batched defaults are the study study/runs/SafetyPointGoal1-10M-defaults)

STUDY_DIR (default study/runs/SafetyPointGoal1-10M) holds one shapo-train run directory per
part (study/run_study_10m.sh); parts still running are reported at the budget they reached.
The figures and summary.csv come from `shapo-plot` (shapo_jax.experiments.plots.plot_sweep);
this script adds the OmniSafe 0.5 reference rows and each part's training wall time, summed
over the log chunks of metrics.jsonl (env steps of the chunk / its steps per second, so it
leaves out compilation, evaluation and restarts), the figure against_omnisafe (each part's
final return and episode cost, mean +- sd over seeds, by OmniSafe's), each SHAPO part's
difference from its baseline (shapo-plot's against_baseline.csv, Welch intervals), SHAPO's
diagnostics over training (the KL its perturbation reached, the reweighting, the PPO epochs
run), once study/crosscheck_10m.py has run, the final policies on our port and on the
original, and with --against, the parts both studies ran set against each other (the
defaults study against the preset's: `--against study/runs/SafetyPointGoal1-10M`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from shapo_jax.experiments.plots import plot_sweep, save_figure
from shapo_jax.experiments.stats import (
    DIFFERENCE_KEYS,
    confidence_band,
    difference_band,
    final_metrics,
    healthy_rows,
)
from shapo_jax.experiments.table import read_table, run_dirs
from shapo_jax.io import atomic_write_text, read_jsonl

# OmniSafe 0.5, benchmarks/on-policy, SafetyPointGoal1-v0 at 1e7 steps: return, episode cost
# (mean +- standard deviation over its seeds, as its table gives them)
OMNISAFE = {"ppo_lag": ("PPOLag", 12.96, 6.95, 25.80, 34.99),
            "trpo_lag": ("TRPOLag", 18.51, 3.83, 22.98, 8.45)}


def wall_hours(run_dir: Path) -> float:
    """Hours of training in `run_dir`: each log chunk's env steps (all seeds) over its sps."""
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "sps" in r]
    seconds, previous = 0.0, 0
    for record in sorted({r["env_steps"]: r for r in records}.values(),
                         key=lambda r: r["env_steps"]):
        seeds = sum(1 for r in records if r["env_steps"] == record["env_steps"])
        seconds += (record["env_steps"] - previous) * seeds / record["sps"]
        previous = record["env_steps"]
    return seconds / 3600


def interval(row: dict[str, str], key: str) -> str:
    mean, low, high = (float(row[k]) for k in (key, f"{key}_low", f"{key}_high"))
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(low):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def markdown(summary: list[dict[str, str]], hours: dict[tuple[str, float | None], float]) -> str:
    lines = ["| algo | delta_down | seeds | env steps per run | final return [95% CI over "
             "seeds] | final episode cost | cumulative training cost | train wall time (h) |",
             "|---|---:|---:|---:|---|---|---|---:|"]
    for row in sorted(summary, key=lambda r: (r["algo"].removeprefix("shapo_"), r["algo"],
                                              float(r["delta_down"]))):
        shapo = row["algo"].startswith("shapo_")
        delta = f"{float(row['delta_down']):g}" if shapo else "-"
        key = (row["algo"], float(row["delta_down"]) if shapo else None)
        seeds = row["seeds"] + (f" ({row['diverged']} diverged, left out)"
                                if int(row.get("diverged") or 0) else "")
        lines.append(f"| {row['algo']} | {delta} | {seeds} | {int(row['env_steps']):,} "
                     f"| {interval(row, 'episode_return')} | {interval(row, 'episode_cost')} "
                     f"| {interval(row, 'cumulative_cost')} | {hours.get(key, math.nan):.2f} |")
    for name, ret, ret_sd, cost, cost_sd in OMNISAFE.values():
        lines.append(f"| OmniSafe 0.5 {name} (mean +- sd) | - | - | 10,000,000 | "
                     f"{ret} +- {ret_sd} | {cost} +- {cost_sd} | - | - |")
    return "\n".join(lines)


def difference_cell(row: dict[str, str], key: str) -> str:
    """`band_cell` of the difference in `key` of an against_baseline.csv row (SHAPO -
    baseline)."""
    return band_cell(*(float(row[f"{key}_diff{end}"]) for end in ("", "_low", "_high")))


def band_cell(diff: float, low: float, high: float) -> str:
    """'+1.20 [-0.40, 2.80] (not resolved)': a difference, its interval and what the interval
    says (higher or lower at 95%, or not resolved)."""
    if not math.isfinite(low):
        return f"{diff:+.2f} (no interval)"
    verdict = "higher" if low > 0 else "lower" if high < 0 else "not resolved"
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] ({verdict})"


def difference_markdown(path: Path) -> str:
    """Each SHAPO part against its Lagrangian baseline (against_baseline.csv): SHAPO moves
    the frontier where it is higher in return and not higher in cost, or lower in cost and
    not lower in return."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    lines = ["| SHAPO part | delta_down | baseline | env steps (SHAPO / baseline) | final return, "
             "SHAPO - baseline [95% Welch CI] | final episode cost | cumulative training cost |",
             "|---|---:|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['algo']} | {float(row['delta_down']):g} | {row['baseline']} "
                     f"| {int(row['env_steps']):,} / {int(row['baseline_env_steps']):,} | "
                     + " | ".join(difference_cell(row, key) for key in DIFFERENCE_KEYS) + " |")
    return "\n".join(lines)


def finals_by_part(study: Path) -> dict[str, list[dict]]:
    """Each part's final metrics per seed (`final_metrics`: the last 10% of its log points,
    diverged seeds left out), by part name."""
    parts: dict[str, list[dict]] = {}
    for record in final_metrics(healthy_rows(read_table(study))):
        parts.setdefault(record["run_id"].rsplit("/", 2)[-2], []).append(record)
    return parts


def studies_markdown(study: Path, other: Path) -> str:
    """The parts both studies ran (by name), this study's seeds against the other's: the
    difference of the final metrics, 95% Welch intervals, where both reached one budget."""
    mine, theirs = finals_by_part(study), finals_by_part(other)
    lines = [f"| part | env steps ({study.name} / {other.name}) | final return, "
             f"{study.name} - {other.name} [95% Welch CI] | final episode cost "
             "| cumulative training cost |", "|---|---|---|---|---|"]
    for part in sorted(set(mine) & set(theirs)):
        budgets = [max(r["env_steps"] for r in group) for group in (mine[part], theirs[part])]
        steps = " / ".join(f"{b:,}" for b in budgets)
        if budgets[0] != budgets[1]:
            lines.append(f"| {part} | {steps} | not compared: the budgets differ | - | - |")
            continue
        cells = []
        for key in DIFFERENCE_KEYS:
            cells.append(band_cell(*difference_band(np.array([r[key] for r in mine[part]]),
                                                    np.array([r[key] for r in theirs[part]]))))
        lines.append(f"| {part} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crosscheck_markdown(path: Path) -> str:
    """Per part: the final policies' mean episode return and cost over seeds on our port and
    on the original, and the paired difference original - port per seed (95% intervals over
    seeds; study/crosscheck_10m.py's records, the newest per part, seed and number of
    episodes), with the update of the checkpoint whose policy ran. An interval of the
    difference that holds 0 is a port the original does not tell apart at this number of
    episodes. The interval holds only where each seed ran layouts of its own (distinct
    `layout_seed`s); for records without them (the script's first form) the table gives the
    means alone."""
    newest: dict[tuple[str, int, int], dict] = {}
    for record in read_jsonl(path):
        newest[(record["part"], int(record["episodes"]), int(record["member"]))] = record
    by_part: dict[tuple[str, int], list[dict]] = {}
    for (part, episodes, _), record in sorted(newest.items()):
        by_part.setdefault((part, episodes), []).append(record)
    lines = ["| part | seeds | policy of update | episodes per seed | return, port "
             "| return, original | original - port | episode cost, port "
             "| episode cost, original | original - port |",
             "|---|---:|---:|---:|---|---|---|---|---|---|"]

    def cell(values: list[float], interval: bool) -> str:
        mean, low, high = (float(v[0]) for v in confidence_band(np.array([values]).T))
        if not (interval and math.isfinite(low)):
            return f"{mean:.2f}"
        return f"{mean:.2f} [{low:.2f}, {high:.2f}]"

    for (part, episodes), records in by_part.items():
        layout_seeds = [r.get("layout_seed") for r in records]
        own_layouts = None not in layout_seeds and len(set(layout_seeds)) == len(layout_seeds)
        if not own_layouts:
            part += " (seeds shared layouts: no intervals)"
        cells = []
        for key in ("episode_return_mean", "episode_cost_mean"):
            port = [float(r["port"][key]) for r in records]
            original = [float(r["original"][key]) for r in records]
            cells += [cell(port, own_layouts), cell(original, own_layouts),
                      cell([o - p for o, p in zip(original, port, strict=True)], own_layouts)]
        # records of the script's first form name no update: they ran the final checkpoint
        updates = "/".join(sorted({str(r.get("checkpoint_step", "final")) for r in records}))
        lines.append(f"| {part} | {len(records)} | {updates} | {episodes} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


# SHAPO's diagnostics (docs/algorithms.md §9) over training: column title, metric
MECHANISM_COLUMNS = (("KL reached", "shapo_kl"), ("largest state KL", "shapo_kl_max"),
                     ("geometric w, costly", "shapo_geometric_weight_costly"),
                     ("geometric w, cost-free", "shapo_geometric_weight_safe"),
                     ("mean w, costly", "shapo_weight_costly"),
                     ("mean w, cost-free", "shapo_weight_safe"),
                     ("PPO epochs", "ppo_epochs_done"))
MILESTONES = (1_000_000, 2_500_000, 5_000_000, 7_500_000, 10_000_000)


def mechanism_markdown(study: Path) -> str:
    """Per SHAPO part, at the logged steps nearest 1M, 2.5M, 5M, 7.5M and 10M that it reached
    and at its last logged step: the radius of that update, the seeds' mean KL to the
    perturbed policy (mean and largest over a minibatch's states), the reweighting weights w
    on costly and cost-free samples (geometric and arithmetic mean) and the PPO epochs run
    before the KL stop, with the baseline's epochs after the slash. Means over the seeds'
    finite values: a metric logged only from some update on is '-' before it, and a seed's
    arithmetic mean weight that overflowed is left out of its cell."""
    def by_steps(run_dir: Path) -> dict[int, list[dict]]:
        table: dict[int, list[dict]] = {}
        for record in read_jsonl(run_dir / "metrics.jsonl"):
            table.setdefault(int(record["env_steps"]), []).append(record)
        return table

    def mean(records: list[dict], key: str) -> float:
        values = [float(r[key]) for r in records if r.get(key) is not None
                  and math.isfinite(float(r[key]))]
        return float(np.mean(values)) if values else math.nan

    algos = {d: json.loads((d / "config.json").read_text())["algo"] for d in run_dirs(study)}
    plain = {algo: d for d, algo in algos.items() if not algo.startswith("shapo_")}
    lines = ["| SHAPO part | env steps | radius | "
             + " | ".join(title for title, _ in MECHANISM_COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(MECHANISM_COLUMNS)]
    for run_dir, algo in algos.items():
        if not algo.startswith("shapo_"):
            continue
        table = by_steps(run_dir)
        baseline_dir = plain.get(algo.removeprefix("shapo_"))
        baseline = by_steps(baseline_dir) if baseline_dir else {}
        logged = sorted(table)
        shown = sorted({min(logged, key=lambda s, m=m: abs(s - m)) for m in MILESTONES
                        if logged and logged[-1] >= m * 0.9} | ({logged[-1]} if logged else set()))
        for steps in shown:
            cells = []
            for _, key in MECHANISM_COLUMNS:
                value = mean(table[steps], key)
                cell = "-" if not math.isfinite(value) else f"{value:.4g}"
                if key == "ppo_epochs_done" and steps in baseline and math.isfinite(value):
                    theirs = mean(baseline[steps], key)
                    cell += f" / {theirs:.3g}" if math.isfinite(theirs) else " / -"
                cells.append(cell)
            lines.append(f"| {run_dir.name} | {steps:,} | {mean(table[steps], 'shapo_radius'):g} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def plot_against_omnisafe(study: Path, out: Path) -> list[Path]:
    """Final return against final episode cost per part, mean +- standard deviation over
    seeds (the statistic of OmniSafe's table), next to OmniSafe's PPOLag and TRPOLag."""
    import matplotlib.pyplot as plt

    parts = finals_by_part(study)
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    colors = plt.get_cmap("tab10" if len(parts) <= 10 else "tab20")  # OmniSafe's in black
    for i, (part, records) in enumerate(sorted(parts.items())):
        cost = np.array([r["episode_cost"] for r in records])
        ret = np.array([r["episode_return"] for r in records])
        ddof = 1 if len(records) > 1 else 0
        ax.errorbar(cost.mean(), ret.mean(), xerr=cost.std(ddof=ddof), yerr=ret.std(ddof=ddof),
                    fmt="o", color=colors(i % colors.N), capsize=3, label=f"{part} "
                    f"({len(records)} seeds, {max(r['env_steps'] for r in records):,} steps)")
    for marker, (name, ret, ret_sd, cost, cost_sd) in zip("sD", OMNISAFE.values(), strict=True):
        ax.errorbar(cost, ret, xerr=cost_sd, yerr=ret_sd, fmt=marker, mfc="none", capsize=3,
                    color="k", label=f"OmniSafe 0.5 {name} (10M steps)")
    ax.axvline(25, color="k", ls="--", lw=1)
    ax.set_xlabel("final episode cost (cost limit 25, dashed)")
    ax.set_ylabel("final episode return")
    ax.set_title(f"{study.name}: mean +- sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / "against_omnisafe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="study/runs/SafetyPointGoal1-10M")
    parser.add_argument("--out", help="default: study/figures/<name of STUDY_DIR>")
    parser.add_argument("--against", metavar="OTHER_STUDY",
                        help="also set the parts both studies ran against OTHER_STUDY's")
    args = parser.parse_args()
    study = Path(args.study)
    out = Path(args.out or f"study/figures/{study.name}")
    plot_sweep(study, out=out)
    plot_against_omnisafe(study, out)
    with open(out / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    hours = {}
    for run_dir in run_dirs(study):
        config = json.loads((run_dir / "config.json").read_text())
        shapo = config["algo"].startswith("shapo_")
        hours[config["algo"], float(config["delta_down"]) if shapo else None] = \
            wall_hours(run_dir)
    table = markdown(summary, hours)
    if (out / "against_baseline.csv").exists():
        table += "\n\n" + difference_markdown(out / "against_baseline.csv")
    mechanism = mechanism_markdown(study)
    if mechanism:
        table += "\n\n" + mechanism
    if (out / "crosscheck.jsonl").exists():
        table += "\n\n" + crosscheck_markdown(out / "crosscheck.jsonl")
    if args.against:
        table += "\n\n" + studies_markdown(study, Path(args.against))
    atomic_write_text(out / "table.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
