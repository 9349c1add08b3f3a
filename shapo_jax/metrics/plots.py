"""The training plot: episode return and cost (with the cost limit) against environment steps.

Completed episodes give solid lines (one per seed). With long episodes and environments that
start together, episodes finish rarely, so the plot adds what is known in between: the cost
estimate the Lagrange multiplier uses (cost rate x episode length, dotted) and the
deterministic evaluations (markers)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from shapo_jax.io import atomic_save  # noqa: E402

_STEP_UNITS = ((1e9, "B"), (1e6, "M"), (1e3, "k"))


def format_steps(value: float, _position: int | None = None) -> str:
    """A step count as a short tick label: 0, 950, 200k, 1.5M, 2B (three significant digits),
    so that the ticks of a long run do not print as overlapping raw numbers. Also a
    matplotlib tick function (`FuncFormatter(format_steps)`)."""
    value = float(value)
    if value == 0:
        return "0"
    sign, size = ("-" if value < 0 else ""), abs(value)
    for scale, unit in _STEP_UNITS:
        number = float(f"{size / scale:.3g}")  # rounded first: 999,999 is "1M", not "1000k"
        if number >= 1:
            return f"{sign}{number:g}{unit}"
    return f"{sign}{float(f'{size:.3g}'):g}"


def step_axis(ax) -> None:
    """Label the x axis of `ax` as environment steps with `format_steps` ticks."""
    ax.xaxis.set_major_formatter(FuncFormatter(format_steps))
    ax.set_xlabel("environment steps")


def plot_training(
    records: list[dict[str, Any]], path: str | os.PathLike, cost_limit: float | None = None,
    title: str = "",
) -> Path:
    """Save return, episode cost and cumulative cost curves (one line per seed) to `path`."""
    by_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_seed[record.get("seed", 0)].append(record)
    panels = [("episode_return", "episode return"), ("episode_cost", "episode cost"),
              ("cumulative_cost", "cumulative training cost")]
    extras = {  # panel key -> (record key, style, label)
        "episode_return": [("eval_return", dict(marker="o", linestyle="none"), "evaluation")],
        "episode_cost": [
            ("episode_cost_estimate", dict(linestyle=":"), "estimate (rate x length)"),
            ("eval_cost", dict(marker="o", linestyle="none"), "evaluation"),
        ],
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for seed, rows in sorted(by_seed.items()):
            rows = [r for r in rows if r.get(key) is not None]
            line = ax.plot([r["env_steps"] for r in rows], [r[key] for r in rows],
                           label=f"seed {seed}")
            color = line[0].get_color()
            for extra, style, name in extras.get(key, []):
                points = [r for r in by_seed[seed] if r.get(extra) is not None]
                if points:
                    ax.plot([r["env_steps"] for r in points], [r[extra] for r in points],
                            color=color, label=f"seed {seed}: {name}", **style)
        if key == "episode_cost" and cost_limit is not None:
            ax.axhline(cost_limit, color="k", linestyle="--", linewidth=1, label="cost limit")
        step_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120))
    finally:
        plt.close(fig)
