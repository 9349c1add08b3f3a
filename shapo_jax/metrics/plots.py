"""The training plot: episode return and cost (with the cost limit) against environment steps."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for seed, rows in sorted(by_seed.items()):
            rows = [r for r in rows if r.get(key) is not None]
            ax.plot([r["env_steps"] for r in rows], [r[key] for r in rows], label=f"seed {seed}")
        if key == "episode_cost" and cost_limit is not None:
            ax.axhline(cost_limit, color="k", linestyle="--", linewidth=1, label="cost limit")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
