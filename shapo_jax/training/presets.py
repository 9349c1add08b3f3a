"""Named bundles of settings: `--preset NAME` in shapo-train and shapo-sweep.

`omnisafe`: OmniSafe 0.5's PPOLag and TRPOLag settings (its on-policy benchmark, whose tables
the field cites: 10M steps, cost limit 25, SafetyPointGoal1 and others), as far as a batched
trainer can follow them. Per update OmniSafe collects 20,000 steps from 4 environments; here
40 environments x 512 steps = 20,480 (the batch must split into whole minibatches). PPOLag:
40 epochs of 64-sample minibatches (320 of them) stopped early at a KL of 0.02, Adam 3e-4 for
both critics and the actor, the actor's rate decayed linearly to 0, each critic clipped to a
gradient norm of 40 on its own. TRPOLag: trust region 0.01, CG 15 iterations with damping 0.1
on every state (fisher_fraction 1), 10 critic epochs of 128-sample minibatches. Both: cost limit
25, multiplier init 0.001 and Adam 0.035 on the expected episode cost, [64, 64] tanh networks,
observation normalisation, gamma 0.99, GAE lambda 0.95; the reward advantage standardised over
the batch and the cost advantage only centred (OmniSafe's `standardized_cost_adv` subtracts the
mean and keeps the scale), as shapo-jax always does (docs/algorithms.md §1).

Where it cannot follow OmniSafe (docs/algorithms.md §11 points here):
- OmniSafe's 4 environments run 5,000 steps each per update, so GAE sees long stretches of
  every episode; a batched trainer gathers its batch as many short rollouts (40 x 512 here,
  1,024 x 20 in the 10M study), whose later steps lean more on the critics' bootstraps.
- OmniSafe's critic loss adds an L2 penalty on the critic weights (critic_norm_coef 0.001);
  shapo-jax has none.
- OmniSafe's vectorised environments reset in lockstep and it counts every episode; shapo-jax
  starts its environments at random points and counts full episodes only (§10).
- OmniSafe steps each minibatch's critics before its actor; the two are independent, so the
  order changes nothing.
"""

from __future__ import annotations

from typing import Any

_OMNISAFE_COMMON: dict[str, Any] = {
    "num_envs": 40, "rollout_length": 512, "cost_limit": 25.0, "lagrange_method": "adam",
    "lagrange_init": 0.001, "lagrange_lr": 0.035, "hidden_sizes": [64, 64], "activation": "tanh",
    "normalize_observations": True, "gamma": 0.99, "gae_lambda": 0.95, "cost_gamma": 0.99,
    "cost_gae_lambda": 0.95, "max_grad_norm": 40.0, "separate_critics": True,
    "critic_lr": 3e-4, "cost_estimator": "recent_episodes",
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "omnisafe": {
        "ppo": {**_OMNISAFE_COMMON, "update_epochs": 40, "num_minibatches": 320,
                "target_kl": 0.02, "clip": 0.2, "entropy_coef": 0.0, "actor_lr": 3e-4,
                "actor_lr_schedule": "linear"},
        "trpo": {**_OMNISAFE_COMMON, "trust_region": 0.01, "trpo_cg_iters": 15,
                 "trpo_cg_damping": 0.1, "fisher_fraction": 1.0, "critic_epochs": 10,
                 "num_minibatches": 160},
    },
}


def preset_overrides(name: str, algo: str) -> dict[str, Any]:
    """The TrainConfig fields that preset `name` sets for `algo` (PPO or TRPO family)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    family = "trpo" if algo.endswith("trpo_lag") else "ppo"
    return dict(PRESETS[name][family])
