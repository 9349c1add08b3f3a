"""Named bundles of settings: `--preset NAME` in shapo-train and shapo-sweep.

`omnisafe`: OmniSafe 0.5's PPOLag and TRPOLag settings (its on-policy benchmark, whose tables
the field cites: 10M steps, cost limit 25, SafetyPointGoal1 and others), as far as a batched
trainer can follow them. Per update OmniSafe collects 20,000 steps from 4 environments; here
40 environments x 512 steps = 20,480 (the batch must split into whole minibatches). PPOLag:
40 epochs of 64-sample minibatches (320 of them) stopped early at a KL of 0.02, Adam 3e-4 for
both critics and the actor, the actor's rate decayed linearly to 0, each critic clipped to a
gradient norm of 40 on its own. TRPOLag: trust region 0.01 and CG damping 0.1 in OmniSafe's
units, a KL averaged over the action dimensions (`trpo_kl_per_action_dim`), CG 15 iterations
on every state (fisher_fraction 1), 10 critic epochs of 128-sample minibatches at Adam 1e-3.
Both: cost limit 25, multiplier init 0.001 and Adam 0.035 on the expected episode cost, [64, 64]
tanh networks, a state-independent log-std starting at 0 (std 1), an L2 penalty of 0.001 on the
critics' weights, observation normalisation, gamma 0.99, GAE lambda 0.95; the reward advantage
standardised over the batch and the cost advantage only centred (OmniSafe's
`standardized_cost_adv` subtracts the mean and keeps the scale), as shapo-jax always does
(docs/algorithms.md §1).

The multiplier's cost: OmniSafe resets its environments at every epoch and runs whole episodes,
so the episodes it averages (its last 50) were each run by one of the latest policies. Here
environments start at random points of their episodes and a batch holds a few steps of each,
so an episode that ends in this batch was run by the policies of the last 1000 / rollout_length
updates; their mean cost lags the policy by half that. The preset gives the multiplier the
batch's cost rate x episode length instead (`cost_estimator="rate"`): the cost of the current
policy's actions over every phase of the episode, without the episodes' lag (the states still
come partly from older policies; OmniSafe's 50-episode window lags by about one epoch). It
assumes full-length episodes: on tasks whose episodes end early (the locomotion tasks' health
checks, the fall tasks) it overstates the episode cost, and `--set
cost_estimator=recent_episodes` is the closer choice there (docs/algorithms.md §10).

Where it cannot follow OmniSafe (docs/algorithms.md §11 points here):
- OmniSafe's environments run 5,000 steps each per update, so GAE sees long stretches of
  every episode; a batched trainer gathers its batch as many short rollouts (40 x 512 here,
  1,024 x 20 in the 10M study), whose later steps lean more on the critics' bootstraps.
- OmniSafe initialises its layers as PyTorch does (uniform, +-1/sqrt(fan_in), weights and
  biases, the output layers included); shapo-jax orthogonally (gain sqrt 2, zero biases, the
  actor's mean layer at 0.01). `--set layer_init=pytorch` follows OmniSafe; the preset keeps
  the orthogonal one, with which its 10M-step runs were made (RESULTS.md).
- OmniSafe clips normalised observations to +-5 and floors their std at 1e-2; shapo-jax clips
  to +-10 (`rollout/normalization.py`).
- OmniSafe counts every episode; shapo-jax counts full episodes only (§10).
- OmniSafe steps each minibatch's critics before its actor; the two are independent, so the
  order changes nothing.

The first 10M-step study (RESULTS.md) ran an earlier form of this preset: log-std from -0.5,
no critic L2, TRPO's critics at 3e-4 and its KL summed over the actions, and the multiplier on
the mean cost of the episodes that ended in each batch.
"""

from __future__ import annotations

from typing import Any

_OMNISAFE_COMMON: dict[str, Any] = {
    "num_envs": 40, "rollout_length": 512, "cost_limit": 25.0, "lagrange_method": "adam",
    "lagrange_init": 0.001, "lagrange_lr": 0.035, "hidden_sizes": [64, 64], "activation": "tanh",
    "normalize_observations": True, "gamma": 0.99, "gae_lambda": 0.95, "cost_gamma": 0.99,
    "cost_gae_lambda": 0.95, "max_grad_norm": 40.0, "separate_critics": True,
    "critic_lr": 3e-4, "cost_estimator": "rate", "init_log_std": 0.0, "critic_l2": 0.001,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "omnisafe": {
        "ppo": {**_OMNISAFE_COMMON, "update_epochs": 40, "num_minibatches": 320,
                "target_kl": 0.02, "clip": 0.2, "entropy_coef": 0.0, "actor_lr": 3e-4,
                "actor_lr_schedule": "linear"},
        "trpo": {**_OMNISAFE_COMMON, "trust_region": 0.01, "trpo_kl_per_action_dim": True,
                 "trpo_cg_iters": 15, "trpo_cg_damping": 0.1, "fisher_fraction": 1.0,
                 "critic_epochs": 10, "num_minibatches": 160, "critic_lr": 1e-3},
    },
}


def preset_overrides(name: str, algo: str) -> dict[str, Any]:
    """The TrainConfig fields that preset `name` sets for `algo` (PPO or TRPO family)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    family = "trpo" if algo.endswith("trpo_lag") else "ppo"
    return dict(PRESETS[name][family])
