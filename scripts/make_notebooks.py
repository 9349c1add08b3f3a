#!/usr/bin/env python
"""Write the notebooks in notebooks/ (outputs empty). Run after editing a cell here:

    python scripts/make_notebooks.py

Every notebook reads its budget from SHAPO_NOTEBOOK_STEPS and writes its figures under
SHAPO_NOTEBOOK_OUT (default notebook_outputs/), so the test suite runs them small.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

SETUP = '''import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import envs
from shapo_jax.training import TrainConfig, make_train

STEPS = int(os.environ.get("SHAPO_NOTEBOOK_STEPS", "{steps}"))  # environment steps of training
OUT = Path(os.environ.get("SHAPO_NOTEBOOK_OUT", "notebook_outputs"))
OUT.mkdir(parents=True, exist_ok=True)
print(f"budget {{STEPS:,}} env steps; figures in {{OUT}}")'''

TRAIN = '''config = TrainConfig(
    env="TinyHazardNav", algo="shapo_ppo_lag", total_steps=STEPS, num_envs=64,
    rollout_length=50, cost_limit=2.0, delta_down=0.005, log_every_steps=3200,
)
env = envs.make(config.env)
trainer = make_train(config, env)
state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
run = jax.jit(trainer.run, static_argnums=1)

history = []
done = 0
while done < config.num_updates:
    chunk = min(config.updates_per_log, config.num_updates - done)
    state, metrics = run(state, chunk)
    done += chunk
    last = {k: float(v[-1]) for k, v in jax.device_get(metrics).items()}
    history.append({"env_steps": done * config.env_steps_per_update, **last})
print(f"{done} updates; last: return {history[-1]['episode_return']:.2f}, "
      f"cost {history[-1]['episode_cost']:.2f}, lambda {history[-1]['lagrange_multiplier']:.3f}")'''


def quickstart() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Quickstart: SHAPO-PPO-Lag on TinyHazardNav\n\n"
            "A point must reach a goal on the right; a hazard disc lies on the straight path "
            "(cost 1 per step inside it). We train SHAPO-PPO-Lag with `make_train`, plot the "
            "learning curves and draw the trained policy.\n\n"
            "`SHAPO_NOTEBOOK_STEPS` sets the budget (a few hundred thousand steps learn the "
            "detour in about a minute on a CPU)."),
        new_code_cell(SETUP.format(steps=300_000)),
        new_markdown_cell("## Train\n`trainer.run(state, n)` is `n` updates in one `lax.scan`; "
                          "we call it once per log point and keep the last update's metrics."),
        new_code_cell(TRAIN),
        new_markdown_cell("## Learning curves"),
        new_code_cell('''steps = [h["env_steps"] for h in history]
panels = [("episode_return", "episode return"), ("episode_cost", "episode cost"),
          ("cumulative_cost", "cumulative training cost"), ("lagrange_multiplier", "lambda")]
fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
for ax, (key, label) in zip(axes, panels):
    ax.plot(steps, [h[key] for h in history], marker=".")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
axes[1].axhline(config.cost_limit, color="k", ls="--", lw=1)
fig.tight_layout()
fig.savefig(OUT / "quickstart_curves.png", dpi=110)
plt.show()'''),
        new_markdown_cell("## Render the policy\nOne episode with the mean action, drawn top-down "
                          "by `envs.render` (hazard blue, goal green, robot red)."),
        new_code_cell('''from envs.render import render_rollout, save_video

act = jax.jit(trainer.policy(state, deterministic=True))
step = jax.jit(env.step)
env_state = jax.jit(env.reset)(jax.random.PRNGKey(1))
states, total_reward, total_cost = [env_state], 0.0, 0.0
for t in range(env.episode_length):
    action, _ = act(env_state.obs[None], jax.random.PRNGKey(t))
    env_state = step(env_state, action[0])
    states.append(env_state)
    total_reward += float(env_state.reward)
    total_cost += float(env_state.info["cost"])
    if float(env_state.done):
        break
print(f"episode: return {total_reward:.2f}, cost {total_cost:.0f}, {len(states) - 1} steps")
frames = render_rollout(env, states, size=(200, 200))
save_video(frames, OUT / "quickstart_policy.gif", fps=15)
save_video(frames, OUT / "quickstart_policy.png", strip_every=max(1, len(frames) // 6))
plt.figure(figsize=(4, 4))
plt.imshow(frames[-1])
plt.axis("off")
plt.show()'''),
    ]
    return new_notebook(cells=cells)


def reweighting() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# The reweighting SHAPO induces\n\n"
            "SHAPO evaluates the policy gradient at the pessimistic parameters theta + epsilon. "
            "Sample i then counts with weight w(s, a) = pi_(theta+eps)(a|s) / pi_theta(a|s) "
            "(docs/algorithms.md §9, paper Appendix C): w > 1 on actions the update would make "
            "less likely (negative Lagrangian advantage, typically costly ones), w < 1 on "
            "favoured ones. "
            "Here we train briefly, collect a batch, compute epsilon with "
            "`shapo_jax.shapo_perturbation`, the weights with `shapo_jax.perturbation_weights`, "
            "and compare costly with cost-free samples, along with the per-state sharpness "
            "KL(pi_theta(.|s) || pi_(theta+eps)(.|s))."),
        new_code_cell(SETUP.format(steps=100_000)),
        new_code_cell(TRAIN),
        new_markdown_cell("## One batch, as the update sees it\nRollout with the current "
                          "policy, normalised observations, GAE for reward and cost, and the "
                          "Lagrangian advantage A_lag = (A_r - lambda A_c) / (1 + lambda)."),
        new_code_cell('''from shapo_jax.advantages import generalized_advantages
from shapo_jax.rollout import normalize, rollout
from shapo_jax.update.learner import UpdateBatch
from shapo_jax.update.losses import lagrangian_advantage, standardize


@jax.jit
def collect(state, key):
    _, _, traj = rollout(env, trainer.policy(state), state.env_state, state.tracker, key,
                         config.rollout_length)
    obs, next_obs = normalize(state.obs_stats, traj.obs), normalize(state.obs_stats, traj.next_obs)
    critics, critic = state.learner.critic_params, trainer.networks.critic
    def gae(name, signal):
        return generalized_advantages(
            signal, critic.apply(critics[name], obs), critic.apply(critics[name], next_obs),
            traj.terminated, traj.done, config.gamma, config.gae_lambda)[0]
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    adv = lagrangian_advantage(standardize(flat(gae("reward", traj.reward))),
                               standardize(flat(gae("cost", traj.cost)), center_only=True),
                               state.lagrange.multiplier)
    batch = UpdateBatch(obs=flat(obs), action=flat(traj.action),
                        old_log_prob=flat(traj.log_prob), advantage=adv,
                        reward_target=adv, cost_target=adv, cost=flat(traj.cost))
    return batch, flat(traj.obs)

batch, raw_obs = collect(state, jax.random.PRNGKey(7))
print(f"{batch.obs.shape[0]} samples, {float((batch.cost > 0).mean()):.1%} of them costly")'''),
        new_markdown_cell("## The perturbation and the weights"),
        new_code_cell('''from shapo_jax import (perturbation_weights, shapo_perturbation,
                       summarize_reweighting)
from shapo_jax.policy import gaussian_kl, gaussian_log_prob
from shapo_jax.update.ppo import ppo_objective

actor, params = trainer.networks.actor, state.learner.actor_params
mean0, log_std0 = actor.apply(params, batch.obs)
objective = lambda p: ppo_objective(p, trainer.networks, batch, config.clip, 0.0)[0]
mean_kl = lambda p: gaussian_kl(mean0, log_std0, *actor.apply(p, batch.obs)).mean()
log_prob = lambda p: gaussian_log_prob(*actor.apply(p, batch.obs), batch.action)

delta = 0.02  # a visible radius for the figure (training used config.delta_down)
epsilon, info = jax.jit(lambda p: shapo_perturbation(
    objective, mean_kl, p, delta, cg_iters=20, damping=0.01, return_info=True))(params)
weights = perturbation_weights(log_prob, params, epsilon)
per_state_kl = gaussian_kl(mean0, log_std0, *actor.apply(
    jax.tree.map(lambda a, b: a + b, params, epsilon), batch.obs))
summary = summarize_reweighting(weights, batch.cost)
print(f"predicted KL {float(info.predicted_kl):.4f} (delta {delta}); measured mean KL "
      f"{float(per_state_kl.mean()):.4f}")
print(f"objective: L(theta) = {float(objective(params)):.4f}, "
      f"L(theta + eps) = {float(objective(jax.tree.map(jnp.add, params, epsilon))):.4f}")
print(f"mean w: costly {float(summary.mean_weight_costly):.4f}, "
      f"cost-free {float(summary.mean_weight_safe):.4f} "
      f"({float(summary.fraction_costly):.1%} costly)")
# the geometric mean exp(mean log w): the first-order weight, which a few large ratios cannot set
print(f"geometric mean w: costly {float(summary.geometric_weight_costly):.4f}, "
      f"cost-free {float(summary.geometric_weight_safe):.4f}")'''),
        new_markdown_cell("## Costly against cost-free samples; sharpness across the plane\n"
                          "Left: the distribution of w. Middle: w against the Lagrangian "
                          "advantage (w ~ 1 + eps^T grad log pi: below 1 where A_lag > 0). Right: "
                          "the per-state KL at each sample's position."),
        new_code_cell('''w, adv, cost = (np.asarray(x)
                for x in (weights, batch.advantage, batch.cost))
costly = cost > 0
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
bins = np.linspace(np.percentile(w, 0.5), np.percentile(w, 99.5), 50)
axes[0].hist(w[~costly], bins=bins, density=True, alpha=0.6, label="cost-free")
if costly.any():
    axes[0].hist(w[costly], bins=bins, density=True, alpha=0.6, label="costly")
axes[0].axvline(1.0, color="k", lw=1)
axes[0].set_xlabel("w(s, a)"); axes[0].legend()
axes[1].scatter(adv[~costly], w[~costly], s=2, alpha=0.3, label="cost-free")
axes[1].scatter(adv[costly], w[costly], s=4, alpha=0.6, label="costly")
axes[1].axhline(1.0, color="k", lw=1); axes[1].set_xlabel("A_lag"); axes[1].set_ylabel("w")
axes[1].legend()
pos = np.asarray(raw_obs)[:, :2]
sc = axes[2].scatter(pos[:, 0], pos[:, 1], c=np.asarray(per_state_kl), s=3, cmap="viridis")
fig.colorbar(sc, ax=axes[2], label="KL(pi_theta || pi_theta+eps) per state")
axes[2].set_xlabel("x"); axes[2].set_ylabel("y"); axes[2].set_aspect("equal")
fig.tight_layout()
fig.savefig(OUT / "reweighting.png", dpi=110)
plt.show()'''),
    ]
    return new_notebook(cells=cells)


def pareto() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Pareto fronts of a sweep\n\n"
            "Reads a sweep's table (`SHAPO_SWEEP` = a sweep directory or CSV written by "
            "`shapo-sweep`). Without one, it runs a small sweep itself: PPO-Lag against "
            "SHAPO-PPO-Lag at two radii on TinyHazardNav, `SHAPO_NOTEBOOK_STEPS` steps per run. "
            "Final values average the last 10% of each run's log points; points are means over "
            "seeds with 95% confidence bars; the staircase is each algorithm's Pareto front."),
        new_code_cell('''import os
import subprocess
import sys
from pathlib import Path

from IPython.display import Image, display

from shapo_jax.experiments import (
    final_metrics, plot_learning_curves, plot_pareto, read_table, summarize_runs,
)

STEPS = int(os.environ.get("SHAPO_NOTEBOOK_STEPS", "100000"))
OUT = Path(os.environ.get("SHAPO_NOTEBOOK_OUT", "notebook_outputs"))
SWEEP = os.environ.get("SHAPO_SWEEP")
OUT.mkdir(parents=True, exist_ok=True)'''),
        new_code_cell('''if not SWEEP:
    # The same as `shapo-sweep ...` in a terminal, run in its own process; run again, it
    # resumes (finished runs are skipped).
    SWEEP = OUT / "pareto_sweep"
    command = [
        sys.executable, "-c",
        "from shapo_jax.experiments.cli import sweep_main; raise SystemExit(sweep_main())",
        "--algos", "ppo_lag", "shapo_ppo_lag", "--envs", "TinyHazardNav",
        "--delta-down", "0.002", "0.01", "--seeds", "2", "--total-steps", str(STEPS),
        "--num-envs", "64", "--set", "rollout_length=50", "--set", "cost_limit=2.0",
        "--set", "log_every_steps=3200", "--quiet", "--out", str(SWEEP),
    ]
    print(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
rows = read_table(SWEEP)
summary = summarize_runs(final_metrics(rows, fraction=0.1))
for s in summary:
    print(f"{s['env']:>14} {s['algo']:>14} delta={s['delta_down']:<6g} seeds={s['seeds']} "
          f"return {s['episode_return']:8.3f}  cost {s['episode_cost']:7.3f}  "
          f"cumulative cost {s['cumulative_cost']:9.1f}")'''),
        new_code_cell('''for env in sorted({r["env"] for r in rows}):
    paths = plot_pareto(summary, env, OUT / f"pareto_{env}")
    plot_learning_curves(rows, env, OUT / f"curves_{env}")
    display(Image(filename=str(paths[0])))'''),
    ]
    return new_notebook(cells=cells)


def main() -> None:
    notebooks = {"quickstart.ipynb": quickstart(), "reweighting.ipynb": reweighting(),
                 "pareto.ipynb": pareto()}
    for name, notebook in notebooks.items():
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        notebook.metadata["language_info"] = {"name": "python"}
        nbformat.validate(notebook)
        nbformat.write(notebook, ROOT / "notebooks" / name)
        print(ROOT / "notebooks" / name)


if __name__ == "__main__":
    main()
