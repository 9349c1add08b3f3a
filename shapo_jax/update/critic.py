"""The critics' step: reward and cost value regression, sharpness-aware with radius
rho_critic (docs/algorithms.md §8); rho = 0 gives the plain gradient exactly.

Two modes (`CriticSettings.separate`): the joint step (default) takes one loss, one SAM
perturbation and one gradient clip over both critics; the separate step (OmniSafe 0.5's
practice) gives each critic its own perturbation, normalised by its own gradient, and its own
clip, so a critic with a small loss is not left unperturbed by the other's large gradient.

`CriticSettings.l2` adds l2 * ||w||^2 (every weight and bias of a critic) to each critic's
loss, OmniSafe 0.5's `critic_norm_coef`; the logged losses stay the squared errors.
"""

from __future__ import annotations

import functools

import jax
import optax
from chex import ArrayTree

from shapo_jax.sharpness.sam import isolated_value_and_grad, sharpness_aware_value_and_grad
from shapo_jax.sharpness.tree_math import tree_vdot
from shapo_jax.update.learner import Networks, UpdateBatch, make_optimizer
from shapo_jax.update.losses import value_loss
from shapo_jax.update.settings import CriticSettings

CRITICS = ("reward", "cost")


def critic_loss(
    critic_params: ArrayTree, networks: Networks, batch: UpdateBatch, l2: float = 0.0
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Sum of the reward and cost critics' squared errors, plus l2 * ||w||^2 over both
    critics' parameters; aux: the two squared errors."""
    reward_loss = value_loss(networks.critic.apply(critic_params["reward"], batch.obs),
                             batch.reward_target)
    cost_loss = value_loss(networks.critic.apply(critic_params["cost"], batch.obs),
                           batch.cost_target)
    return with_weight_penalty(reward_loss + cost_loss, critic_params, l2), (reward_loss, cost_loss)


def with_weight_penalty(loss: jax.Array, params: ArrayTree, l2: float) -> jax.Array:
    """loss + l2 * ||params||^2 (every squared parameter); `loss` itself, untouched, at l2 = 0."""
    return loss + l2 * tree_vdot(params, params) if l2 else loss


def critic_gradient(
    critic_params: ArrayTree,
    networks: Networks,
    batch: UpdateBatch,
    rho: jax.Array,
    sharpness_aware: bool,
    separate: bool = False,
    l2: float = 0.0,
) -> tuple[tuple[jax.Array, jax.Array], ArrayTree]:
    """((reward loss, cost loss) at the unperturbed critics, the gradient the optimiser gets).

    Joint (`separate=False`): SAM on the summed loss, eps = rho g / ||g|| with one norm over
    both critics. Separate: for each critic k, eps_k = rho g_k / ||g_k|| from its own loss,
    and its gradient at w_k + eps_k. Without `sharpness_aware`, the plain gradient. `l2`: the
    weight penalty in every loss (`critic_loss`); the returned losses leave it out.
    """
    if not separate:
        # l2 is bound as a constant of the loss: as an argument the barrier would trace it
        loss_fn = functools.partial(critic_loss, l2=l2) if l2 else critic_loss
        if sharpness_aware:
            # At rho = 0 the perturbed point is exactly critic_params: the plain gradient.
            (_, losses), grad = sharpness_aware_value_and_grad(
                loss_fn, critic_params, rho, networks, batch, has_aux=True
            )
        else:
            (_, losses), grad = isolated_value_and_grad(
                loss_fn, critic_params, networks, batch, has_aux=True
            )
        return losses, grad

    def single_loss(params: ArrayTree, obs: jax.Array,
                    target: jax.Array) -> tuple[jax.Array, jax.Array]:
        error = value_loss(networks.critic.apply(params, obs), target)
        return with_weight_penalty(error, params, l2), error

    if set(critic_params) != set(CRITICS):
        raise ValueError(f"critic_gradient: expected critics {CRITICS}, got {tuple(critic_params)}")
    targets = {"reward": batch.reward_target, "cost": batch.cost_target}
    losses, grad = {}, {}
    for name in CRITICS:
        if sharpness_aware:
            (_, losses[name]), grad[name] = sharpness_aware_value_and_grad(
                single_loss, critic_params[name], rho, batch.obs, targets[name], has_aux=True
            )
        else:
            (_, losses[name]), grad[name] = isolated_value_and_grad(
                single_loss, critic_params[name], batch.obs, targets[name], has_aux=True
            )
    return (losses["reward"], losses["cost"]), grad


def critic_optimizer(
    optimizer: optax.GradientTransformation, settings: CriticSettings
) -> optax.GradientTransformation:
    """The optimiser of the critic steps: `optimizer` itself in the joint mode; in the separate
    mode `make_optimizer(settings.max_grad_norm, per_critic=True)`, which clips each critic by
    its own norm and has the same state as `make_optimizer`'s (so it steps that state)."""
    if not settings.separate:
        return optimizer
    return make_optimizer(settings.max_grad_norm, per_critic=True)


def check_critic_state(
    optimizer: optax.GradientTransformation, opt_state: optax.OptState, critic_params: ArrayTree
) -> None:
    """Raise unless `opt_state` has the structure of `optimizer`'s state for `critic_params`
    (the separate mode steps the critics' state with its own `make_optimizer` chain)."""
    expected = jax.tree_util.tree_structure(jax.eval_shape(optimizer.init, critic_params))
    found = jax.tree_util.tree_structure(opt_state)
    if expected != found:
        raise ValueError("separate critics step a make_optimizer state (clip, then Adam with its "
                         f"learning rate in the state); the critics' state is {found}, not "
                         f"{expected}")


def critic_step(
    critic_params: ArrayTree,
    opt_state: optax.OptState,
    optimizer: optax.GradientTransformation,
    networks: Networks,
    batch: UpdateBatch,
    rho: jax.Array,
    sharpness_aware: bool,
    *,
    separate: bool = False,
    l2: float = 0.0,
) -> tuple[ArrayTree, optax.OptState, dict[str, jax.Array]]:
    """One optimiser step on both critics; SAM with radius `rho` when `sharpness_aware`.

    `separate` (`CriticSettings.separate`): per-critic perturbations (`critic_gradient`); then
    `optimizer` must clip each critic on its own, as `critic_optimizer` gives. `l2`
    (`CriticSettings.l2`): the weight penalty of every critic's loss.
    """
    (reward_loss, cost_loss), grad = critic_gradient(
        critic_params, networks, batch, rho, sharpness_aware, separate, l2
    )
    updates, opt_state = optimizer.update(grad, opt_state, critic_params)
    critic_params = optax.apply_updates(critic_params, updates)
    return critic_params, opt_state, {"value_loss": reward_loss, "cost_value_loss": cost_loss}
