"""Evaluate a policy exported by `shapo-export` on the original Safety-Gymnasium 1.0.0 task.

Run with the cross-check venv's Python (`make crosscheck RUN=DIR EPISODES=N`; the venv is set
up once by `scripts/crosscheck_setup.py`), which has the original package and NumPy but no JAX:

    .venv-crosscheck/bin/python scripts/crosscheck.py runs/demo/policy.npz --episodes 16

The policy runs deterministically (its action mean, clipped to the action bounds), each action
repeated `action_repeat` environment steps, on `safety_gymnasium.make("<task>-v0")`; episode i
is reset with `env.reset(seed=seed + i)`, the original's own seeding. The observation is
rebuilt *by name*: the original's flat observation is unflattened with its `obs_space_dict`
and its entries are concatenated in the order of the policy's `obs_layout` (our port's
`observation_blocks`, docs/environments.md §7), so a block the original lacks is refused
instead of being read from the wrong positions. The episode cost is the sum of the step costs
the original returns (its `info["cost_sum"]`, an indicator per step like our
`info["cost"]`, docs/environments.md §2).

Prints one line per episode, then, as its last line, one JSON object: env (the original id),
task (ours), seed, episodes, episode_return_mean/_se, episode_cost_mean/_se (se =
std(ddof=1) / sqrt(N), null for one episode), episode_length_mean (environment steps),
goals_met_mean, cost_terms_mean (the original's cost terms per episode, each an indicator
per step, e.g. cost_hazards), max_step_cost (1 at most, as in our port), action_repeat, the
policy's algo, member and checkpoint_step, and seconds (the episodes' wall time).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# NumPy-only loader of the exported format, loaded by path: this venv has no JAX, so the
# `shapo_jax` package cannot be imported.
LOADER_PATH = REPO / "shapo_jax" / "policy" / "exported.py"

# Our navigation tasks and the original ids they port (docs/environments.md §7).
ORIGINAL_IDS = {name: f"{name}-v0" for name in (
    "SafetyPointGoal0", "SafetyPointGoal1", "SafetyPointGoal2",
    "SafetyPointButton1", "SafetyPointButton2",
    "SafetyCarGoal1", "SafetyCarGoal2",
)}
# Overrides that change how our port computes, not what the task is (docs/environments.md §8),
# and episode_length, checked against the original's separately; any other env option (hazard
# counts, extents, frame skip...) makes a task the original does not have.
PHYSICS_OPTIONS = frozenset({"solver", "jacobian", "solver_iterations", "solver_ls_iterations",
                             "num_candidates"})
ALLOWED_OPTIONS = PHYSICS_OPTIONS | {"episode_length"}


def original_env_id(task: str, env_options: Mapping[str, Any] | None = None) -> str:
    """The Safety-Gymnasium id of our task `task`; refuses options that change the task."""
    if task not in ORIGINAL_IDS:
        raise ValueError(f"no original Safety-Gymnasium task for {task!r}; the cross-check "
                         f"supports: {sorted(ORIGINAL_IDS)}")
    changed = sorted(set(env_options or {}) - ALLOWED_OPTIONS)
    if changed:
        raise ValueError(
            f"the policy was trained with env options {changed} "
            f"({ {k: env_options[k] for k in changed} }), which make a task the original "
            f"{ORIGINAL_IDS[task]} does not have; only {sorted(ALLOWED_OPTIONS)} may be set")
    return ORIGINAL_IDS[task]


def check_layout(layout: Sequence[tuple[str, int]],
                 original_shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Check that every block of our layout exists in the original with the same size.

    `original_shapes` maps the original's observation names to their shapes (from its
    `obs_space_dict`). Returns the original's names that our layout does not use (the policy
    never sees them); raises ValueError naming any missing or mis-sized block.
    """
    missing = [name for name, _ in layout if name not in original_shapes]
    if missing:
        raise ValueError(f"observation blocks {missing} of the policy's layout have no "
                         f"counterpart in the original's observation; it has: "
                         f"{list(original_shapes)}")
    wrong = [(name, size, tuple(original_shapes[name])) for name, size in layout
             if int(np.prod(original_shapes[name], dtype=int)) != int(size)]
    if wrong:
        raise ValueError("observation blocks differ in size (name, ours, original's shape): "
                         f"{wrong}")
    used = {name for name, _ in layout}
    return [name for name in original_shapes if name not in used]


def map_observation(obs: Mapping[str, np.ndarray],
                    layout: Sequence[tuple[str, int]]) -> np.ndarray:
    """Our flat observation from the original's observation dict: blocks in `layout` order.

    Each block is flattened row-major (as Safety-Gymnasium's own flattening does, e.g. the
    Car's 3x3 `ballquat_rear`) and must have the size the layout gives it.
    """
    parts = []
    for name, size in layout:
        if name not in obs:
            raise ValueError(f"observation block {name!r} missing from the original's "
                             f"observation; it has: {list(obs)}")
        block = np.asarray(obs[name], dtype=np.float32).reshape(-1)
        if block.size != int(size):
            raise ValueError(f"observation block {name!r} has {block.size} floats in the "
                             f"original, {size} in the policy's layout")
        parts.append(block)
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def mean_and_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error std(ddof=1) / sqrt(N); the error is None for one value."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no episodes to summarise")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None
    return float(x.mean()), se


def load_exported(path: Path) -> Any:
    """The project's NumPy loader (`shapo_jax/policy/exported.py`, loaded by file path)."""
    if not LOADER_PATH.is_file():
        raise FileNotFoundError(f"{LOADER_PATH} not found: the exported-policy loader comes "
                                "with shapo-export")
    spec = importlib.util.spec_from_file_location("shapo_exported_policy", LOADER_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining classes
    spec.loader.exec_module(module)
    return module.load_policy(path)


def run_episode(env: Any, policy: Any, layout: Sequence[tuple[str, int]], seed: int,
                spaces: Any) -> dict[str, Any]:
    """One episode of `policy` on the original `env`, reset with `seed`."""
    import gymnasium  # in the cross-check venv only

    flat, _ = env.reset(seed=seed)
    total_reward = total_cost = 0.0
    steps = goals = 0
    max_step_cost = 0.0
    terms: dict[str, float] = {}
    done = False
    while not done:
        obs = map_observation(gymnasium.spaces.utils.unflatten(spaces, flat), layout)
        action = np.asarray(policy.act(obs), dtype=np.float64)
        for _ in range(int(policy.action_repeat)):
            flat, reward, cost, terminated, truncated, info = env.step(action)
            total_reward += float(reward)
            total_cost += float(cost)
            max_step_cost = max(max_step_cost, float(cost))
            steps += 1
            goals += int(bool(info.get("goal_met", False)))
            for key, value in info.items():
                if key.startswith("cost_") and key != "cost_sum":
                    terms[key] = terms.get(key, 0.0) + float(value)
            done = bool(terminated or truncated)
            if done:
                break
    return {"seed": seed, "return": total_reward, "cost": total_cost, "length": steps,
            "goals_met": goals, "cost_terms": terms, "max_step_cost": max_step_cost}


def crosscheck(policy_path: Path, episodes: int, seed: int) -> dict[str, Any]:
    """Evaluate the exported policy on its original task; returns the summary dict."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    policy = load_exported(policy_path)
    env_id = original_env_id(policy.env, policy.env_options)
    layout = [(str(name), int(size)) for name, size in policy.obs_layout]

    warnings.filterwarnings("ignore")  # the original's deprecation chatter
    with contextlib.redirect_stderr(io.StringIO()):  # and Farama's notices at import
        import safety_gymnasium  # in the cross-check venv only

    env = safety_gymnasium.make(env_id)
    spaces = env.obs_space_dict
    unused = check_layout(layout, {k: tuple(s.shape) for k, s in spaces.items()})
    if unused:
        print(f"note: the original observes {unused}, which the policy's layout does not use")
    original_length = env.spec.max_episode_steps
    if int(policy.episode_length) != int(original_length):
        raise ValueError(f"the policy was trained on {policy.episode_length}-step episodes, "
                         f"the original {env_id} runs {original_length}")

    t0 = time.perf_counter()
    results = []
    for i in range(episodes):
        r = run_episode(env, policy, layout, seed + i, spaces)
        results.append(r)
        print(f"episode {i + 1}/{episodes} seed {r['seed']}: return {r['return']:.3f} "
              f"cost {r['cost']:.0f} length {r['length']} goals {r['goals_met']}", flush=True)
    seconds = time.perf_counter() - t0
    env.close()
    if max(r["max_step_cost"] for r in results) > 1.0:
        print("note: a step of the original cost more than 1; our port's cost is an indicator "
              "per step (docs/environments.md §2), so the episode costs do not compare")

    ret_mean, ret_se = mean_and_se([r["return"] for r in results])
    cost_mean, cost_se = mean_and_se([r["cost"] for r in results])
    term_names = sorted({k for r in results for k in r["cost_terms"]})
    return {
        "env": env_id,
        "task": policy.env,
        "seed": seed,
        "episodes": episodes,
        "episode_return_mean": ret_mean,
        "episode_return_se": ret_se,
        "episode_cost_mean": cost_mean,
        "episode_cost_se": cost_se,
        "episode_length_mean": float(np.mean([r["length"] for r in results])),
        "goals_met_mean": float(np.mean([r["goals_met"] for r in results])),
        "cost_terms_mean": {k: float(np.mean([r["cost_terms"].get(k, 0.0) for r in results]))
                            for k in term_names},
        "max_step_cost": max(r["max_step_cost"] for r in results),
        "action_repeat": int(policy.action_repeat),
        "algo": getattr(policy, "algo", None),
        "member": getattr(policy, "member", None),
        "checkpoint_step": getattr(policy, "checkpoint_step", None),
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", type=Path, help="policy.npz written by shapo-export")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0,
                        help="episode i is reset with seed + i (default 0)")
    args = parser.parse_args(argv)
    if not args.policy.is_file():
        raise SystemExit(f"{args.policy} not found (write it with `shapo-export RUN --out ...`)")
    try:
        summary = crosscheck(args.policy, args.episodes, args.seed)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"crosscheck: {e}") from None
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
