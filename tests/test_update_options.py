"""OmniSafe 0.5's update options: PPO's KL early stop (`PpoSettings.target_kl`) and per-critic
SAM and clipping (`CriticSettings.separate`), docs/algorithms.md §6 and §8.

Every test draws fresh random inputs (the seed is in the failure message) and checks against
an independent reference: today's update and critic step frozen below, a float64 NumPy KL,
and a per-critic SAM / clip / Adam step written out by hand.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import flat, fresh_rng, fresh_seed, hand_adam

import envs
from shapo_jax.policy import gaussian_log_prob
from shapo_jax.sharpness.sam import isolated_value_and_grad, sharpness_aware_value_and_grad
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.update import (
    CriticSettings,
    PpoSettings,
    ShapoSettings,
    TrpoSettings,
    UpdateHyperparameters,
    critic_gradient,
    critic_loss,
    critic_optimizer,
    critic_step,
    make_ppo_update,
    make_trpo_update,
    ppo_objective,
)
from shapo_jax.update.learner import (
    LearnerState,
    UpdateBatch,
    init_optimizer,
    make_optimizer,
    minibatches,
)

MAX_GRAD_NORM = 40.0
EPOCHS = 4
CONFIG = TrainConfig(env="TinyHazardNav", algo="ppo_lag", num_envs=16, rollout_length=16,
                     num_minibatches=4, update_epochs=EPOCHS, hidden_sizes=(16,),
                     max_grad_norm=MAX_GRAD_NORM)
HP = UpdateHyperparameters(shapo_radius=jnp.float32(0.0), critic_radius=jnp.float32(0.0))


@functools.cache
def trainer():
    return make_train(CONFIG, envs.make("TinyHazardNav"))


def random_params(module, sample_obs: np.ndarray, rng: np.random.Generator):
    """Random weights for `module` (NumPy, no compiled initialiser): kernels with a larger
    spread than the initialiser's (a policy that reacts strongly to the state, as in
    tests/test_trpo.py), small biases, log-std around -0.5."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), sample_obs)

    def leaf(path, shape):
        if "log_std" in jax.tree_util.keystr(path):
            value = -0.5 + 0.3 * rng.standard_normal(shape.shape)
        elif len(shape.shape) == 2:
            value = rng.standard_normal(shape.shape) * np.sqrt(1.0 / shape.shape[0] + 0.09)
        else:
            value = 0.1 * rng.standard_normal(shape.shape)
        return jnp.asarray(value, shape.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@jax.jit
def sample_actions(actor_params, obs, noise):
    mean, log_std = trainer().networks.actor.apply(actor_params, obs)
    action = mean + jnp.exp(log_std) * noise
    return action, gaussian_log_prob(mean, log_std, action)


def random_learner_and_batch(seed: int, actor_lr: float = 3e-3, critic_lr: float = 3e-3):
    """Random actor/critics, random states, actions drawn from pi_old, random advantages and
    targets (as tests/test_trpo.py's helper, with NumPy's generator)."""
    rng = np.random.default_rng(seed)
    networks, optimizer = trainer().networks, trainer().optimizer
    size, obs_dim = CONFIG.batch_size, trainer().env.observation_size
    obs = (1.5 * rng.standard_normal((size, obs_dim))).astype(np.float32)
    actor_params = random_params(networks.actor, obs[:1], rng)
    critic_params = {name: random_params(networks.critic, obs[:1], rng)
                     for name in ("reward", "cost")}
    action_noise = rng.standard_normal((size, trainer().env.action_size)).astype(np.float32)
    action, old_log_prob = sample_actions(actor_params, obs, action_noise)
    learner = LearnerState(
        actor_params=actor_params,
        critic_params=critic_params,
        actor_opt_state=init_optimizer(optimizer, actor_params, actor_lr),
        critic_opt_state=init_optimizer(optimizer, critic_params, critic_lr),
    )
    noise = rng.standard_normal((4, size)).astype(np.float32)
    batch = UpdateBatch(
        obs=jnp.asarray(obs), action=action, old_log_prob=old_log_prob,
        advantage=jnp.asarray(noise[0]), reward_target=jnp.asarray(noise[1]),
        cost_target=jnp.asarray(noise[2]), cost=jnp.asarray((noise[3] > 1.0).astype(np.float32)),
    )
    return learner, batch


def assert_trees_equal(a, b, msg=""):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb), msg
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=msg)


def numpy_mean_kl(actor, params_p, params_q, obs) -> float:
    """E_s[KL(pi_p(.|s) || pi_q(.|s))] of diagonal Gaussians, in float64."""
    mean_p, log_std_p = (np.asarray(x, np.float64) for x in actor.apply(params_p, obs))
    mean_q, log_std_q = (np.asarray(x, np.float64) for x in actor.apply(params_q, obs))
    log_std_p = np.broadcast_to(log_std_p, mean_p.shape)
    log_std_q = np.broadcast_to(log_std_q, mean_q.shape)
    var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
    per_state = np.sum(np.log(np.sqrt(var_q / var_p))
                       + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5, axis=-1)
    return float(per_state.mean())


# ----- today's critic step and PPO update, frozen as references -------------------------------

def todays_critic_step(critic_params, opt_state, optimizer, networks, batch, rho, sharpness_aware):
    if sharpness_aware:
        (_, (reward_loss, cost_loss)), grad = sharpness_aware_value_and_grad(
            critic_loss, critic_params, rho, networks, batch, has_aux=True)
    else:
        (_, (reward_loss, cost_loss)), grad = isolated_value_and_grad(
            critic_loss, critic_params, networks, batch, has_aux=True)
    updates, opt_state = optimizer.update(grad, opt_state, critic_params)
    critic_params = optax.apply_updates(critic_params, updates)
    return critic_params, opt_state, {"value_loss": reward_loss, "cost_value_loss": cost_loss}


def todays_plain_ppo_update(networks, optimizer, ppo):
    """PPO-Lag's update as it was before the options (shapo=None)."""

    def minibatch_step(learner, minibatch, hp):
        def objective(params):
            return ppo_objective(params, networks, minibatch, ppo.clip, ppo.entropy_coef)

        (value, _), grad = isolated_value_and_grad(objective, learner.actor_params, has_aux=True)
        ascent = jax.tree_util.tree_map(jnp.negative, grad)
        updates, actor_opt_state = optimizer.update(ascent, learner.actor_opt_state,
                                                    learner.actor_params)
        actor_params = optax.apply_updates(learner.actor_params, updates)
        critic_params, critic_opt_state, critic_metrics = todays_critic_step(
            learner.critic_params, learner.critic_opt_state, optimizer, networks, minibatch,
            hp.critic_radius, False)
        learner = LearnerState(actor_params, critic_params, actor_opt_state, critic_opt_state)
        return learner, {"actor_objective": value, **critic_metrics}

    def update(learner, batch, key, hp):
        def epoch(learner, epoch_key):
            return jax.lax.scan(lambda s, mb: minibatch_step(s, mb, hp), learner,
                                minibatches(batch, epoch_key, ppo.num_minibatches))

        learner, metrics = jax.lax.scan(epoch, learner, jax.random.split(key, ppo.update_epochs))
        return learner, jax.tree_util.tree_map(jnp.nanmean, metrics)

    return update


@functools.cache
def ppo_update(update_epochs: int = EPOCHS, target_kl: float | None = None, vmapped=False):
    settings = PpoSettings(clip=CONFIG.clip, update_epochs=update_epochs,
                           num_minibatches=CONFIG.num_minibatches, target_kl=target_kl)
    update = make_ppo_update(trainer().networks, trainer().optimizer, ppo=settings)

    def run(learner, batch, key):
        return update(learner, batch, key, HP)

    return jax.jit(jax.vmap(run) if vmapped else run)


# ----- 1. PPO KL early stop -------------------------------------------------------------------

def test_target_kl_none_is_todays_update():
    seed = fresh_seed()
    learner, batch = random_learner_and_batch(seed)
    key = jax.random.PRNGKey(seed + 1)
    reference = jax.jit(todays_plain_ppo_update(
        trainer().networks, trainer().optimizer,
        PpoSettings(update_epochs=EPOCHS, num_minibatches=CONFIG.num_minibatches)))
    expected, expected_metrics = reference(learner, batch, key, HP)
    got, metrics = ppo_update()(learner, batch, key)
    assert_trees_equal(got, expected, f"seed {seed}")
    assert "ppo_epochs_done" not in metrics and "ppo_final_kl" not in metrics
    for name, value in expected_metrics.items():
        np.testing.assert_array_equal(metrics[name], value, err_msg=f"{name}, seed {seed}")


def test_tiny_target_kl_applies_exactly_one_epoch():
    seed = fresh_seed()
    learner, batch = random_learner_and_batch(seed)
    key = jax.random.PRNGKey(seed + 1)
    got, metrics = ppo_update(target_kl=1e-9)(learner, batch, key)
    one_epoch, one_epoch_metrics = ppo_update(update_epochs=1)(learner, batch, key)
    assert float(metrics["ppo_epochs_done"]) == 1.0, f"seed {seed}"
    assert_trees_equal(got, one_epoch, f"seed {seed}")
    for name, value in one_epoch_metrics.items():  # means over the first epoch's steps only
        np.testing.assert_allclose(metrics[name], value, rtol=1e-6, err_msg=f"{name}, seed {seed}")
    # The KL after the kept epoch, against a float64 reference on the whole batch.
    kl = numpy_mean_kl(trainer().networks.actor, learner.actor_params, got.actor_params,
                       batch.obs)
    assert kl > 1e-9
    np.testing.assert_allclose(float(metrics["ppo_final_kl"]), kl, rtol=1e-3,
                               err_msg=f"seed {seed}")
    # The early stop changed something: the four epochs' result is another.
    full, _ = ppo_update()(learner, batch, key)
    assert not np.array_equal(flat(full.actor_params), flat(got.actor_params))


def test_huge_target_kl_applies_every_epoch():
    seed = fresh_seed()
    learner, batch = random_learner_and_batch(seed)
    key = jax.random.PRNGKey(seed + 1)
    got, metrics = ppo_update(target_kl=1e6)(learner, batch, key)
    expected, expected_metrics = ppo_update()(learner, batch, key)
    assert float(metrics["ppo_epochs_done"]) == EPOCHS
    assert_trees_equal(got, expected, f"seed {seed}")
    for name, value in expected_metrics.items():  # the masked mean may round differently
        np.testing.assert_allclose(metrics[name], value, rtol=1e-6, err_msg=f"{name}, seed {seed}")
    kl = numpy_mean_kl(trainer().networks.actor, learner.actor_params, got.actor_params,
                       batch.obs)
    np.testing.assert_allclose(float(metrics["ppo_final_kl"]), kl, rtol=1e-3,
                               err_msg=f"seed {seed}")


def test_vmapped_members_stop_at_their_own_epochs():
    seed = fresh_seed()
    # Member 0 steps ten times faster than member 1: it exceeds the target earlier.
    learners, batches = zip(random_learner_and_batch(seed, actor_lr=3e-3),
                            random_learner_and_batch(seed + 7, actor_lr=3e-4), strict=True)
    key = jax.random.PRNGKey(seed + 1)
    # A target between member 1's KL after its first and after its last epoch.
    _, slow = ppo_update(target_kl=1e-9)(learners[1], batches[1], key)
    _, slow_all = ppo_update(target_kl=1e6)(learners[1], batches[1], key)
    first, last = float(slow["ppo_final_kl"]), float(slow_all["ppo_final_kl"])
    assert last > 2 * first, f"seed {seed}: member 1's KL barely grows ({first} -> {last})"
    target = float(np.sqrt(first * last))
    alone = [ppo_update(target_kl=target)(l, b, key) for l, b in zip(learners, batches,
                                                                       strict=True)]
    done = [float(m["ppo_epochs_done"]) for _, m in alone]
    assert done[0] < done[1], f"seed {seed}: epochs done {done}, target {target}"
    stack = lambda *xs: jnp.stack(xs)  # noqa: E731
    together, metrics = ppo_update(target_kl=target, vmapped=True)(
        jax.tree_util.tree_map(stack, *learners), jax.tree_util.tree_map(stack, *batches),
        jnp.stack([key, key]))
    np.testing.assert_array_equal(np.asarray(metrics["ppo_epochs_done"]), done,
                                  err_msg=f"seed {seed}")
    for member, (learner, member_metrics) in enumerate(alone):
        mine = jax.tree_util.tree_map(lambda x, m=member: x[m], together)
        for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(learner),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"seed {seed}")
        np.testing.assert_allclose(metrics["ppo_final_kl"][member],
                                   member_metrics["ppo_final_kl"], rtol=1e-3)


def test_epochs_after_the_stop_are_not_run():
    """With target_kl the epochs are a while loop on the stop flag, whose body holds one epoch's
    minibatch scan: after the stop no epoch is computed (a masked scan of all `update_epochs`
    epochs would give the same numbers at up to 40x the update's cost: the 10M study's seeds stop
    after 1 to 6 of 40). Without it, one scan over the epochs, as before."""
    learner, batch = random_learner_and_batch(fresh_seed())

    def loops(eqns):
        return [(e.primitive.name, e.params.get("length")) for e in eqns
                if e.primitive.name in ("scan", "while")]

    def update_eqns(target_kl):
        update = make_ppo_update(trainer().networks, trainer().optimizer, ppo=PpoSettings(
            update_epochs=EPOCHS, num_minibatches=CONFIG.num_minibatches, target_kl=target_kl))
        return jax.make_jaxpr(update)(learner, batch, jax.random.PRNGKey(0), HP).jaxpr.eqns

    assert loops(update_eqns(None)) == [("scan", EPOCHS)]
    (loop,) = [e for e in update_eqns(0.01) if e.primitive.name in ("scan", "while")]
    assert loop.primitive.name == "while"
    assert loops(loop.params["body_jaxpr"].eqns) == [("scan", CONFIG.num_minibatches)]


def test_target_kl_must_be_positive():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="target_kl"):
            PpoSettings(target_kl=bad)


# ----- 2. per-critic SAM and clipping ----------------------------------------------------------

def critic_case(seed: int, ratio: float = 1000.0):
    """Critics, their (fresh) optimiser state and a minibatch whose reward-loss gradient has
    exactly `ratio` times the norm of the cost loss's (the gradient is linear in the residual)."""
    learner, batch = random_learner_and_batch(seed, critic_lr=1e-2)
    params = learner.critic_params
    noise = np.random.default_rng(seed + 3).standard_normal((2, batch.obs.shape[0]))
    noise = noise.astype(np.float32)
    values = critic_values(params, batch.obs)
    reward_target = values["reward"] + 100.0 * noise[0]
    cost_value = values["cost"]
    reward_norm = np.linalg.norm(flat(hand_grad(params["reward"], batch.obs, reward_target)))
    unit_norm = np.linalg.norm(flat(hand_grad(params["cost"], batch.obs, cost_value + noise[1])))
    cost_target = cost_value + (reward_norm / ratio / unit_norm) * noise[1]
    batch = batch.replace(reward_target=reward_target, cost_target=cost_target)
    return params, learner.critic_opt_state, batch


def warm_state(params, state, scale: dict, seed: int):
    """Three Adam steps on random gradients of norm `scale[critic]`: non-zero moments of the
    size of the real gradients, so that the next step depends on the gradient's scale."""
    rng = np.random.default_rng(seed + 10)
    for _ in range(3):
        fake = {}
        for name, sub in params.items():
            vector = rng.standard_normal(flat(sub).size)
            fake[name] = unflat(vector * (scale[name] / np.linalg.norm(vector)), sub)
        state = (state[0], adam_update(fake, state[1], params))
    return state


@jax.jit
def adam_update(grad, state, params):
    return optax.inject_hyperparams(optax.adam)(learning_rate=1.0).update(grad, state, params)[1]


def hand_loss(params, obs, target):
    return jnp.mean((trainer().networks.critic.apply(params, obs) - target) ** 2)


@jax.jit
def critic_values(params, obs):
    return {k: trainer().networks.critic.apply(p, obs) for k, p in params.items()}


@jax.jit
def hand_grad(params, obs, target):
    return jax.grad(hand_loss)(params, obs, target)


def unflat(vector, like):
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, start = [], 0
    for leaf in leaves:
        out.append(jnp.asarray(vector[start:start + leaf.size].reshape(leaf.shape), leaf.dtype))
        start += leaf.size
    return jax.tree_util.tree_unflatten(treedef, out)


def reference_gradients(params, batch, rho, separate):
    """Per critic (or jointly): g, eps = rho g / ||g||, and the gradient at w + eps."""
    targets = {"reward": batch.reward_target, "cost": batch.cost_target}
    g = {k: flat(hand_grad(params[k], batch.obs, targets[k])) for k in targets}
    if separate:
        eps = {k: rho * g[k] / np.linalg.norm(g[k]) for k in g}
    else:
        joint = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
        eps = {k: rho * g[k] / joint for k in g}
    sam = {k: flat(hand_grad(unflat(flat(params[k]) + eps[k], params[k]), batch.obs, targets[k]))
           for k in targets}
    return g, eps, sam


@functools.cache
def jitted_critic_step(sharpness_aware: bool, separate: bool = False, today=False):
    """f(params, state, batch, rho, max_norm) under jit: critic_step (or today's) with the
    optimiser `make_optimizer(max_norm)` built inside from a traced clip norm; `separate`:
    with `separate=True` and the per-critic clip that `critic_optimizer` gives for it."""
    networks = trainer().networks

    def step(params, state, batch, rho, max_norm):
        optimizer = make_optimizer(max_norm)
        if today:
            return todays_critic_step(params, state, optimizer, networks, batch, rho,
                                      sharpness_aware)
        if not separate:  # the signature critic_step had before the option
            return critic_step(params, state, optimizer, networks, batch, rho, sharpness_aware)
        return critic_step(params, state, make_optimizer(max_norm, per_critic=True), networks,
                           batch, rho, sharpness_aware, separate=True)

    return jax.jit(step)


@pytest.mark.parametrize("sharpness_aware", [True, False])
def test_joint_mode_is_todays_critic_step(sharpness_aware):
    seed = fresh_seed()
    rng = np.random.default_rng(seed + 2)
    params, state, batch = critic_case(seed, ratio=float(rng.uniform(1, 10)))
    state = warm_state(params, state, {"reward": 1.0, "cost": 1.0}, seed)
    rho, max_norm = jnp.float32(rng.uniform(0.01, 0.5)), jnp.float32(rng.uniform(0.5, 2))
    expected = jitted_critic_step(sharpness_aware, today=True)(params, state, batch, rho,
                                                                max_norm)
    got = jitted_critic_step(sharpness_aware)(params, state, batch, rho, max_norm)
    assert_trees_equal(got, expected, f"seed {seed}")


def test_separate_critics_against_hand_reference():
    seed = fresh_seed()
    ratio = 1000.0
    params, state, batch = critic_case(seed, ratio)
    networks = trainer().networks
    rho = float(np.random.default_rng(seed + 2).uniform(0.05, 0.2))
    g, eps, sam = reference_gradients(params, batch, rho, separate=True)
    np.testing.assert_allclose(np.linalg.norm(g["reward"]) / np.linalg.norm(g["cost"]), ratio,
                               rtol=1e-3)
    # Each perturbation has norm rho, the cost critic's too ...
    for k in eps:
        np.testing.assert_allclose(np.linalg.norm(eps[k]), rho, rtol=1e-12)
    # ... where the joint perturbation leaves the cost critic all but unperturbed.
    _, joint_eps, joint_sam = reference_gradients(params, batch, rho, separate=False)
    np.testing.assert_allclose(np.linalg.norm(joint_eps["cost"]), rho / ratio, rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(joint_eps["reward"]), rho, rtol=1e-5)

    # The gradients handed to the optimiser, both modes, against the references.
    for separate, reference in ((True, sam), (False, joint_sam)):
        _, grad = jax.jit(lambda p, b, r, sep=separate: critic_gradient(p, networks, b, r, True,
                                                                        sep))(
            params, batch, jnp.float32(rho))
        for k in reference:
            scale = np.abs(reference[k]).max()
            np.testing.assert_allclose(flat(grad[k]), reference[k], rtol=1e-4,
                                       atol=1e-4 * scale, err_msg=f"{k}, seed {seed}")
    # The two modes differ in the cost critic's gradient, far beyond that tolerance.
    difference = np.abs(sam["cost"] - joint_sam["cost"]).max()
    assert difference > 100 * 1e-4 * np.abs(sam["cost"]).max(), f"seed {seed}"

    # The step: each critic clipped by its own norm, then Adam. The clip lies between the two
    # norms: the reward critic is clipped, the cost critic is not (the joint clip would scale
    # it down by about sqrt(norm_cost / norm_reward)).
    norms = {k: np.linalg.norm(v) for k, v in sam.items()}
    assert norms["reward"] > 10 * norms["cost"], f"seed {seed}: {norms}"
    max_norm = float(np.sqrt(norms["reward"] * norms["cost"]))
    clipped = {k: v * min(1.0, max_norm / norms[k]) for k, v in sam.items()}
    state = warm_state(params, state, {k: min(max_norm, n) for k, n in norms.items()}, seed)
    new_params, new_state, metrics = jitted_critic_step(True, True)(
        params, state, batch, jnp.float32(rho), jnp.float32(max_norm))
    expected = hand_adam(params, state, clipped)
    for k in expected:
        change = expected[k] - flat(params[k])
        np.testing.assert_allclose(flat(new_params[k]) - flat(params[k]), change, rtol=2e-3,
                                   atol=2e-3 * np.abs(change).max(), err_msg=f"{k}, seed {seed}")
    joint_norm = np.sqrt(sum(n ** 2 for n in norms.values()))
    joint_clipped = {k: v * min(1.0, max_norm / joint_norm) for k, v in sam.items()}
    joint_change = hand_adam(params, state, joint_clipped)["cost"] - flat(params["cost"])
    separate_change = expected["cost"] - flat(params["cost"])
    assert np.abs(joint_change - separate_change).max() > 0.1 * np.abs(separate_change).max(), \
        f"seed {seed}: the per-critic clip made no difference to the step"
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    np.testing.assert_allclose(metrics["value_loss"],
                               jax.jit(hand_loss)(params["reward"], batch.obs, batch.reward_target),
                               rtol=1e-5)
    np.testing.assert_allclose(metrics["cost_value_loss"],
                               jax.jit(hand_loss)(params["cost"], batch.obs, batch.cost_target),
                               rtol=1e-5)


def test_separate_state_is_the_default_state():
    params = random_learner_and_batch(fresh_seed())[0].critic_params
    default = make_optimizer(MAX_GRAD_NORM)
    separate = critic_optimizer(default, CriticSettings(separate=True,
                                                        max_grad_norm=MAX_GRAD_NORM))
    assert separate is not default
    assert (jax.tree_util.tree_structure(init_optimizer(default, params, 1e-3))
            == jax.tree_util.tree_structure(init_optimizer(separate, params, 1e-3)))
    assert critic_optimizer(default, CriticSettings()) is default
    for bad in (None, 0.0, float("inf")):
        with pytest.raises(ValueError, match="max_grad_norm"):
            CriticSettings(separate=True, max_grad_norm=bad)


@pytest.mark.parametrize("algo", ["ppo", "trpo"])
def test_updates_pass_the_critic_settings_through(algo):
    """One epoch of one minibatch of SHAPO (critics with SAM): the critics move as one separate
    critic step on the shuffled batch, not as a joint one; another optimiser's state is
    refused."""
    seed = fresh_seed()
    hp = UpdateHyperparameters(shapo_radius=jnp.float32(0.0), critic_radius=jnp.float32(0.1))
    learner, batch = random_learner_and_batch(seed)
    max_norm = 0.05  # below both critics' gradient norms: both are clipped
    learner = learner.replace(critic_opt_state=warm_state(
        learner.critic_params, learner.critic_opt_state, {"reward": 0.3 * max_norm,
                                                          "cost": max_norm}, seed))
    key = jax.random.PRNGKey(seed + 1)
    networks, optimizer = trainer().networks, trainer().optimizer
    settings = CriticSettings(separate=True, max_grad_norm=max_norm)
    if algo == "ppo":
        update = make_ppo_update(networks, optimizer, critic=settings, shapo=ShapoSettings(),
                                 ppo=PpoSettings(update_epochs=1, num_minibatches=1))
    else:
        update = make_trpo_update(networks, optimizer, critic=settings, shapo=ShapoSettings(),
                                  trpo=TrpoSettings(critic_epochs=1, num_minibatches=1))
    got, _ = jax.jit(update)(learner, batch, key, hp)
    shuffled = jax.tree_util.tree_map(lambda x: x[0],
                                      minibatches(batch, jax.random.split(key, 1)[0], 1))
    args = (learner.critic_params, learner.critic_opt_state, shuffled, hp.critic_radius,
            jnp.float32(max_norm))
    separate, _, _ = jitted_critic_step(True, True)(*args)
    joint, _, _ = jitted_critic_step(True)(*args)
    assert np.abs(flat(separate) - flat(joint)).max() > 10 * 1e-6, f"seed {seed}"
    np.testing.assert_allclose(flat(got.critic_params), flat(separate), rtol=1e-5, atol=1e-6,
                               err_msg=f"seed {seed}")
    wrong = learner.replace(critic_opt_state=optax.adam(1e-3).init(learner.critic_params))
    with pytest.raises(ValueError, match="separate critics"):
        jax.eval_shape(update, wrong, batch, key, hp)


# ----- the options through the trainer and the omnisafe preset --------------------------

def test_linear_actor_learning_rate_decay_follows_the_closed_form():
    from shapo_jax.training import TrainConfig, make_train

    rng = fresh_rng()
    lr = float(rng.uniform(1e-4, 1e-3))
    config = TrainConfig(env="TinyHazardNav", algo="ppo_lag", num_envs=8, rollout_length=10,
                         num_minibatches=2, update_epochs=1, actor_lr=lr, total_steps=400,
                         actor_lr_schedule="linear")
    trainer = make_train(config, envs.make("TinyHazardNav"))
    assert config.num_updates == 5
    state = trainer.init(jax.random.PRNGKey(int(rng.integers(1 << 30))))
    # 3 updates past the config's: the rate stays at 0 (it never turns into ascent)
    _, metrics = jax.jit(lambda s: trainer.run(s, config.num_updates + 3))(state)
    steps = np.arange(config.num_updates + 3)
    want = lr * np.maximum(1.0 - steps / config.num_updates, 0.0)  # OmniSafe's LinearLR
    np.testing.assert_allclose(np.asarray(metrics["actor_learning_rate"]), want, rtol=1e-6)
    constant = make_train(dataclasses.replace(config, actor_lr_schedule="constant"),
                          envs.make("TinyHazardNav"))
    constant_state = constant.init(jax.random.PRNGKey(int(rng.integers(1 << 30))))
    _, metrics = jax.jit(lambda s: constant.run(s, 3))(constant_state)
    np.testing.assert_allclose(np.asarray(metrics["actor_learning_rate"]), lr, rtol=1e-6)


def test_omnisafe_preset_sets_their_batch_and_flags_override_it():
    from shapo_jax.training.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--preset", "omnisafe", "--algo", "ppo_lag"])
    config = config_from_args(args)
    assert (config.batch_size, config.minibatch_size, config.update_epochs) == (20480, 64, 40)
    assert config.target_kl == 0.02 and config.separate_critics
    assert config.actor_lr_schedule == "linear"
    trpo = config_from_args(build_parser().parse_args(
        ["--preset", "omnisafe", "--algo", "trpo_lag", "--set", "critic_epochs=3"]))
    assert trpo.minibatch_size == 128 and trpo.fisher_fraction == 1.0
    assert trpo.critic_epochs == 3  # --set wins over the preset
    # OmniSafe's KL is a mean over the action dimensions: in our summed KL, x action_size
    assert trpo.trpo_kl_per_action_dim and trpo.critic_lr == 1e-3
    assert trpo.trpo_settings(3).trust_region == pytest.approx(0.03)
    assert trpo.trpo_settings(3).cg_damping == pytest.approx(0.3)
    with pytest.raises(ValueError, match="action size"):
        trpo.trpo_settings()
    assert (config.init_log_std, config.critic_l2, config.cost_estimator) == (0.0, 0.001, "rate")


# ----- 3. the critics' L2 penalty and TRPO's KL per action dimension --------------------------

@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("sharpness_aware", [False, True])
def test_critic_l2_penalty_against_hand_reference(separate, sharpness_aware):
    """loss + l2 ||w||^2: the gradient gains 2 l2 w (SAM: taken at w + eps, eps from the
    penalised gradient); the reported losses stay the squared errors."""
    seed = fresh_seed()
    rng = np.random.default_rng(seed + 2)
    params, _, batch = critic_case(seed, ratio=float(rng.uniform(1, 10)))
    l2, rho = float(rng.uniform(1e-3, 1e-1)), float(rng.uniform(0.01, 0.3))
    targets = {"reward": batch.reward_target, "cost": batch.cost_target}
    w = {k: flat(params[k]) for k in targets}

    def penalised_grad(k, vector):
        return flat(hand_grad(unflat(vector, params[k]), batch.obs, targets[k])) + 2 * l2 * vector

    g = {k: penalised_grad(k, w[k]) for k in targets}
    if sharpness_aware:
        norms = ({k: np.linalg.norm(g[k]) for k in g} if separate else
                 dict.fromkeys(g, np.sqrt(sum(np.sum(v ** 2) for v in g.values()))))
        want = {k: penalised_grad(k, w[k] + rho * g[k] / norms[k]) for k in g}
    else:
        want = g
    losses, got = jax.jit(critic_gradient, static_argnums=(1, 4, 5, 6))(
        params, trainer().networks, batch, jnp.float32(rho), sharpness_aware, separate, l2)
    for k in targets:
        np.testing.assert_allclose(flat(got[k]), want[k], rtol=2e-4, atol=1e-6,
                                   err_msg=f"{k}, seed {seed}")
    mse = [float(hand_loss(params[k], batch.obs, targets[k])) for k in ("reward", "cost")]
    np.testing.assert_allclose(np.asarray(losses), mse, rtol=1e-5, err_msg=f"seed {seed}")
    with pytest.raises(ValueError, match="l2"):
        CriticSettings(l2=-l2)


def test_trpo_kl_per_action_dim_is_omnisafes_natural_step():
    """OmniSafe's TRPO bounds the KL averaged over the action dimensions, i.e. our summed KL
    / A: its step solves (F/A + d I) x = g and scales x to KL/A = delta. Our natural step with
    trust region A delta and damping A d (what `trpo_settings` gives) is that step."""
    from shapo_jax.sharpness import natural_step

    rng = fresh_rng()
    n, rank, actions = 12, int(rng.integers(3, 8)), int(rng.integers(2, 9))
    jacobian = rng.standard_normal((rank, n))
    fisher = jacobian.T @ jacobian  # the Fisher of the summed KL, PSD, rank-deficient
    g = rng.standard_normal(n)
    delta, damping = float(rng.uniform(0.005, 0.05)), float(rng.uniform(0.05, 0.5))
    omnisafe = fisher / actions + damping * np.eye(n)
    x = np.linalg.solve(omnisafe, g)
    want = np.sqrt(2 * delta / (x @ omnisafe @ x)) * x
    config = TrainConfig(algo="trpo_lag", trust_region=delta, trpo_cg_damping=damping,
                         trpo_kl_per_action_dim=True)
    settings = config.trpo_settings(actions)
    got = natural_step(jnp.asarray(g, jnp.float32),
                       lambda v: jnp.asarray(fisher, jnp.float32) @ v, settings.trust_region,
                       cg_iters=4 * n, damping=settings.cg_damping)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-6)
    # the same bound: KL_omnisafe(s) = s^T F s / (2 A) <= delta  <=>  s^T F s / 2 <= A delta
    assert settings.trust_region == pytest.approx(actions * delta)


def test_trainer_gives_trpo_the_per_action_settings():
    """A TRPO-Lag trainer with trpo_kl_per_action_dim updates exactly as one given the trust
    region and damping multiplied by the action size."""
    rng = fresh_rng()
    env = envs.make("TinyHazardNav")
    delta, damping = float(rng.uniform(0.005, 0.05)), float(rng.uniform(0.05, 0.5))
    base = dict(env="TinyHazardNav", algo="trpo_lag", num_envs=8, rollout_length=8,
                num_minibatches=2, critic_epochs=1, hidden_sizes=(8,), total_steps=128)
    per_action = make_train(TrainConfig(**base, trust_region=delta, trpo_cg_damping=damping,
                                        trpo_kl_per_action_dim=True), env)
    summed = make_train(TrainConfig(**base, trust_region=delta * env.action_size,
                                    trpo_cg_damping=damping * env.action_size), env)
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    outputs = [jax.jit(lambda s, t=t: t.run(s, 2))(t.init(key)) for t in (per_action, summed)]
    assert_trees_equal(outputs[0], outputs[1], "per-action settings against scaled ones")
    unscaled = make_train(TrainConfig(**base, trust_region=delta, trpo_cg_damping=damping), env)
    other = jax.jit(lambda s: unscaled.run(s, 2))(unscaled.init(key))
    assert not np.allclose(flat(other[0].learner.actor_params),
                           flat(outputs[0][0].learner.actor_params))


def test_new_fields_stay_out_of_config_dicts_at_their_defaults():
    """critic_l2 and trpo_kl_per_action_dim are written only when set, so that the run ids of
    sweeps made before them stay the same; a config round-trips either way."""
    default = TrainConfig(algo="trpo_lag")
    assert not {"critic_l2", "trpo_kl_per_action_dim"} & set(default.to_dict())
    assert TrainConfig.from_dict(default.to_dict()) == default
    l2 = float(fresh_rng().uniform(1e-4, 1e-2))
    changed = dataclasses.replace(default, critic_l2=l2, trpo_kl_per_action_dim=True)
    data = changed.to_dict()
    assert (data["critic_l2"], data["trpo_kl_per_action_dim"]) == (l2, True)
    assert TrainConfig.from_dict(data) == changed
    for bad, match in (({"critic_l2": -l2}, "critic_l2"), ({"critic_l2": True}, "critic_l2"),
                       ({"trpo_kl_per_action_dim": 1}, "trpo_kl_per_action_dim")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(default, **bad)


@pytest.mark.parametrize("algo", ["ppo_lag", "trpo_lag"])
def test_trainer_gives_the_critics_their_l2_penalty(algo):
    """`critic_l2` reaches the critic step through the trainer: one update of a trainer with
    the penalty moves the critics as the update built with CriticSettings(l2=...) does, and
    not as the unpenalised one."""
    rng = fresh_rng()
    l2 = float(rng.uniform(0.05, 0.5))
    env = envs.make("TinyHazardNav")
    config = TrainConfig(env="TinyHazardNav", algo=algo, num_envs=8, rollout_length=8,
                         num_minibatches=2, update_epochs=1, critic_epochs=1,
                         hidden_sizes=(8,), total_steps=128, critic_l2=l2)
    trainer = make_train(config, env)
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    learner = trainer.init(key).learner
    # a random batch of this config's size (the module's batch, cut to it; fresh states)
    batch = jax.tree_util.tree_map(lambda x: x[:config.batch_size],
                                   random_learner_and_batch(int(rng.integers(2**31)))[1])
    batch = batch.replace(obs=jnp.asarray(rng.standard_normal(
        (config.batch_size, env.observation_size)), jnp.float32))
    factory = make_trpo_update if algo == "trpo_lag" else make_ppo_update
    settings = {"trpo": config.trpo_settings()} if algo == "trpo_lag" else {
        "ppo": config.ppo_settings()}

    def critics(update):
        new, _ = jax.jit(update)(learner, batch, key, HP)
        return flat(new.critic_params)

    got = critics(trainer.policy_update)
    want = critics(factory(trainer.networks, trainer.optimizer, critic=CriticSettings(l2=l2),
                           **settings))
    plain = critics(factory(trainer.networks, trainer.optimizer, critic=CriticSettings(),
                            **settings))
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - plain).max() > 1e-6
