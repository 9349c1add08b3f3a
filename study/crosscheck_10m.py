#!/usr/bin/env python
"""Every finished part's final policies on our port and on the original Safety-Gymnasium.

    .venv/bin/python study/crosscheck_10m.py [STUDY_DIR] [--episodes 128]

For each part of the 10M study that has finished (its file `done`) and each of its seeds, the
deterministic policy of the newest checkpoint (`checkpoint_step`, the updates it had done)
runs `--episodes` full episodes on our port (`shapo-eval --json`) and on the original task
(`make crosscheck`, which exports the policy and runs it in the second venv; `make
crosscheck-setup` once). One JSON line per part and seed is appended to
study/figures/<name of STUDY_DIR>/crosscheck.jsonl as it completes, so the script resumes
where it stopped; `study/report_10m.py` tabulates the file.

Each seed's episodes get layouts of their own: seed k's start from the layout seed
`--seed + k * episodes` (its record's `layout_seed`; the original resets its episodes with that
seed and the next ones, our port's evaluation draws its layouts from it). With one set of
layouts for all seeds, the luck of that set is common to every seed's difference original -
port, and the interval over seeds, which sees only their spread, would call that luck a
difference between the ports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from shapo_jax.experiments.table import run_dirs
from shapo_jax.io import append_jsonl, read_jsonl

KEYS = ("episode_return_mean", "episode_return_se", "episode_cost_mean", "episode_cost_se")


def last_json(command: list[str]) -> dict:
    """The JSON object on the last line `command` prints (it must exit 0)."""
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="study/runs/SafetyPointGoal1-10M")
    parser.add_argument("--out", help="the JSONL file (default: "
                        "study/figures/<name of STUDY_DIR>/crosscheck.jsonl)")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0,
                        help="the first seed's first layout seed")
    args = parser.parse_args()
    out = Path(args.out or f"study/figures/{Path(args.study).name}/crosscheck.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["part"], r["member"], r["episodes"], r.get("layout_seed"))
            for r in (read_jsonl(out) if out.exists() else [])}
    for run_dir in run_dirs(args.study):
        if not (run_dir / "done").exists():
            continue
        config = json.loads((run_dir / "config.json").read_text())
        for member in range(config["num_seeds"]):
            layout_seed = args.seed + member * args.episodes
            if (run_dir.name, member, args.episodes, layout_seed) in done:
                continue
            port = last_json([".venv/bin/shapo-eval", str(run_dir), "--member", str(member),
                              "--episodes", str(args.episodes), "--seed", str(layout_seed),
                              "--json"])
            original = last_json(["make", "-s", "crosscheck", f"RUN={run_dir}",
                                  f"MEMBER={member}", f"EPISODES={args.episodes}",
                                  f"SEED={layout_seed}"])
            if original["checkpoint_step"] != port["checkpoint_step"]:
                raise RuntimeError(f"{run_dir} member {member}: the original ran the policy of "
                                   f"update {original['checkpoint_step']}, our port that of "
                                   f"update {port['checkpoint_step']}")
            record = {"part": run_dir.name, "algo": config["algo"],
                      "delta_down": config["delta_down"], "member": member,
                      "seed": config["seed"] + member, "episodes": args.episodes,
                      "layout_seed": layout_seed, "checkpoint_step": port["checkpoint_step"],
                      "port": {k: port[k] for k in KEYS},
                      "original": {k: original[k] for k in KEYS}}
            append_jsonl(out, [record])
            print(json.dumps(record))


if __name__ == "__main__":
    main()
