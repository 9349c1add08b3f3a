"""The critics' step: reward and cost value regression, sharpness-aware with radius
rho_critic (docs/algorithms.md §8); rho = 0 gives the plain gradient exactly.

Two modes (`CriticSettings.separate`): the joint step (default) takes one loss, one SAM
perturbation and one gradient clip over both critics; the separate step (OmniSafe 0.5's
practice) gives each critic its own perturbation, normalised by its own gradient, and its own
clip, so a critic with a small loss is not left unperturbed by the other's large gradient.
"""

from __future__ import annotations

import jax
import optax
from chex import ArrayTree

from shapo_jax.sharpness.sam import isolated_value_and_grad, sharpness_aware_value_and_grad
from shapo_jax.update.learner import Networks, UpdateBatch, make_optimizer
from shapo_jax.update.losses import value_loss
from shapo_jax.update.settings import CriticSettings

CRITICS = ("reward", "cost")


def critic_loss(
    critic_params: ArrayTree, networks: Networks, batch: UpdateBatch
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Sum of the reward and cost critics' squared errors; aux: the two losses."""
    reward_loss = value_loss(networks.critic.apply(critic_params["reward"], batch.obs),
                             batch.reward_target)
    cost_loss = value_loss(networks.critic.apply(critic_params["cost"], batch.obs),
                           batch.cost_target)
    return reward_loss + cost_loss, (reward_loss, cost_loss)


def critic_gradient(
    critic_params: ArrayTree,
    networks: Networks,
    batch: UpdateBatch,
    rho: jax.Array,
    sharpness_aware: bool,
    separate: bool = False,
) -> tuple[tuple[jax.Array, jax.Array], ArrayTree]:
    """((reward loss, cost loss) at the unperturbed critics, the gradient the optimiser gets).

    Joint (`separate=False`): SAM on the summed loss, eps = rho g / ||g|| with one norm over
    both critics. Separate: for each critic k, eps_k = rho g_k / ||g_k|| from its own loss,
    and its gradient at w_k + eps_k. Without `sharpness_aware`, the plain gradient.
    """
    if not separate:
        if sharpness_aware:
            # At rho = 0 the perturbed point is exactly critic_params: the plain gradient.
            (_, losses), grad = sharpness_aware_value_and_grad(
                critic_loss, critic_params, rho, networks, batch, has_aux=True
            )
        else:
            (_, losses), grad = isolated_value_and_grad(
                critic_loss, critic_params, networks, batch, has_aux=True
            )
        return losses, grad

    def single_loss(params: ArrayTree, obs: jax.Array, target: jax.Array) -> jax.Array:
        return value_loss(networks.critic.apply(params, obs), target)

    if set(critic_params) != set(CRITICS):
        raise ValueError(f"critic_gradient: expected critics {CRITICS}, got {tuple(critic_params)}")
    targets = {"reward": batch.reward_target, "cost": batch.cost_target}
    losses, grad = {}, {}
    for name in CRITICS:
        if sharpness_aware:
            losses[name], grad[name] = sharpness_aware_value_and_grad(
                single_loss, critic_params[name], rho, batch.obs, targets[name]
            )
        else:
            losses[name], grad[name] = isolated_value_and_grad(
                single_loss, critic_params[name], batch.obs, targets[name]
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
) -> tuple[ArrayTree, optax.OptState, dict[str, jax.Array]]:
    """One optimiser step on both critics; SAM with radius `rho` when `sharpness_aware`.

    `separate` (`CriticSettings.separate`): per-critic perturbations (`critic_gradient`); then
    `optimizer` must clip each critic on its own, as `critic_optimizer` gives.
    """
    (reward_loss, cost_loss), grad = critic_gradient(
        critic_params, networks, batch, rho, sharpness_aware, separate
    )
    updates, opt_state = optimizer.update(grad, opt_state, critic_params)
    critic_params = optax.apply_updates(critic_params, updates)
    return critic_params, opt_state, {"value_loss": reward_loss, "cost_value_loss": cost_loss}
