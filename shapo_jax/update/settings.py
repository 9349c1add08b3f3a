"""The static settings of the policy updates, grouped by what reads them.

They fix the compiled program (loop lengths, shapes, constants); the numbers that may differ
between vmapped runs reach an update as `UpdateHyperparameters` instead.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from flax import struct

from shapo_jax.sharpness.perturbation import DEFAULT_DAMPING

# One damping for every Fisher solve (SHAPO's and TRPO's): x = (F + damping I)^-1 g.
DEFAULT_CG_DAMPING = DEFAULT_DAMPING


@struct.dataclass
class UpdateHyperparameters:
    """The traced numbers a policy update reads (learning rates live in the optimiser states).

    shapo_radius: SHAPO's KL radius for this update, delta_down after its schedule
      (docs/algorithms.md §4, §7); 0 gives the plain gradient exactly.
    critic_radius: the critics' SAM radius rho (docs/algorithms.md §8); 0 gives plain steps.
    """

    shapo_radius: jax.Array
    critic_radius: jax.Array


@dataclasses.dataclass(frozen=True)
class ShapoSettings:
    """SHAPO's Fisher solve for the perturbation (docs/algorithms.md §4).

    fisher_fraction: the share of a (mini)batch's states the Fisher is averaged over
      (docs/algorithms.md §5; TRPO's natural step uses the same subsample).
    """

    cg_iters: int = 10
    cg_damping: float = DEFAULT_CG_DAMPING
    fisher_fraction: float = 0.25


@dataclasses.dataclass(frozen=True)
class PpoSettings:
    """The clipped-surrogate epochs of (SHAPO-)PPO-Lag (paper, Algorithm 4).

    target_kl: KL early stopping as in OmniSafe 0.5 (docs/algorithms.md §6). None (default):
      every epoch is applied. A number: after each epoch the mean KL(pi_old || pi_theta) over
      the whole batch is measured; the epoch in which it first exceeds `target_kl` is kept and
      the remaining epochs are not run (a while loop; vmapped members stop independently).
    """

    clip: float = 0.2
    entropy_coef: float = 0.0
    update_epochs: int = 4
    num_minibatches: int = 8
    target_kl: float | None = None

    def __post_init__(self):
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"PpoSettings: target_kl must be None or > 0, got {self.target_kl!r}")


@dataclasses.dataclass(frozen=True)
class CriticSettings:
    """How one critic step treats the reward and the cost critic (docs/algorithms.md §8).

    separate: False (default): one loss over both critics, one SAM perturbation normalised by
      the norm of the gradient over both, and the optimiser's one global-norm clip over both
      (`make_optimizer`). True (OmniSafe 0.5's practice): each critic gets its own SAM
      perturbation of radius rho, normalised by its own loss gradient's norm, and its gradient
      is clipped by its own global norm to `max_grad_norm`, then Adam steps both. The Adam
      state is the same in both modes (`init_optimizer`, checkpoints).
    max_grad_norm: the per-critic clip, required with `separate=True` (the trainer gives
      `TrainConfig.max_grad_norm`, the value of the joint clip); not read otherwise.
    l2: weight penalty l2 * ||w||^2 added to each critic's loss (OmniSafe 0.5's
      `critic_norm_coef`, 0.001 in its on-policy configs); 0 (default): none.
    """

    separate: bool = False
    max_grad_norm: float | None = None
    l2: float = 0.0

    def __post_init__(self):
        if self.separate and (self.max_grad_norm is None or not math.isfinite(self.max_grad_norm)
                              or self.max_grad_norm <= 0):
            raise ValueError("CriticSettings: separate=True needs a finite max_grad_norm > 0, "
                             f"got {self.max_grad_norm!r}")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"CriticSettings: l2 must be a finite number >= 0, got {self.l2!r}")


@dataclasses.dataclass(frozen=True)
class TrpoSettings:
    """The natural step, line search and critic epochs of (SHAPO-)TRPO-Lag (Algorithm 3).

    fisher_fraction: as in `ShapoSettings`, for the Fisher of the natural step.
    """

    trust_region: float = 0.01
    cg_iters: int = 15
    cg_damping: float = DEFAULT_CG_DAMPING
    fisher_fraction: float = 0.25
    line_search_steps: int = 15
    line_search_decay: float = 0.8
    critic_epochs: int = 4
    num_minibatches: int = 8
