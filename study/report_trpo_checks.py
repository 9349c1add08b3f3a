"""The TRPO-Lag checks (study/run_trpo_checks.sh) beside the 10M study's TRPO-Lag.

For each log point (every 10 updates, 204,800 steps) and each run, the mean over seeds 0 and 1
of the batch's reward and cost rates x 1000 (the return and cost of a 1000-step episode at the
current policy's rates, known from the first update on, where full episodes end only after
about 1M steps), the multiplier and the policy's std. Prints a Markdown table; OmniSafe's
published TRPOLag curve reaches the cost limit of 25 within about 1M steps (RESULTS.md).

    .venv/bin/python study/report_trpo_checks.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from shapo_jax.io import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
STUDY_RUN = ROOT / "study/runs/SafetyPointGoal1-10M/trpo_lag"
CHECKS = ROOT / "study/runs/SafetyPointGoal1-trpo-checks"
COLUMNS = (("reward_rate", 1000.0, "reward x 1000"), ("cost_rate", 1000.0, "cost x 1000"),
           ("lagrange_multiplier", 1.0, "lambda"), ("policy_std", 1.0, "std"))


def seed_means(run_dir: Path, seeds: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """env_steps -> column -> mean over `seeds`, at the steps every seed has logged."""
    by_step: dict[int, list[dict]] = {}
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        if record.get("seed") in seeds and record.get("cost_rate") is not None:
            by_step.setdefault(record["env_steps"], []).append(record)
    return {step: {key: float(np.mean([r[key] for r in rows])) * scale
                   for key, scale, _ in COLUMNS}
            for step, rows in sorted(by_step.items()) if len(rows) == len(seeds)}


def markdown(runs: dict[str, Path], seeds: tuple[int, ...]) -> str:
    """One row per (log point, run), at the log points every run has reached."""
    means = {name: seed_means(path, seeds) for name, path in runs.items()
             if (path / "metrics.jsonl").exists()}
    steps = sorted(set.intersection(*(set(m) for m in means.values()))) if means else []
    header = ["env steps", "run"] + [label for _, _, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|---:|---|" + "---:|" * len(COLUMNS)]
    for step in steps:
        for name, by_step in means.items():
            cells = [f"{step:,}", name] + [f"{by_step[step][key]:.2f}" for key, _, _ in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    runs = {"10M study": STUDY_RUN}
    runs.update({path.name.removeprefix("trpo_lag-"): path for path in sorted(CHECKS.glob("*"))})
    print(markdown(runs, tuple(args.seeds)))


if __name__ == "__main__":
    main()
