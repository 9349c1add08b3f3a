"""`make_train(config, env)`: the whole training run as pure, jittable, vmappable functions.

One update (paper, Algorithms 3/4 around the rollout; docs/algorithms.md §6):
  rollout (lax.scan over the env batch) -> GAE for reward and cost -> Lagrange multiplier
  update on the batch's episode-cost estimate -> policy and critic update (the update chosen
  when the trainer is built: `make_ppo_update` or `make_trpo_update`, with or without SHAPO)
  -> observation statistics merged.
Every numeric setting in `Hyperparameters` is an input, so `jax.vmap` over keys and settings
runs a grid of runs in one compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from brax.envs.base import Env, State
from flax import struct

from shapo_jax.advantages import generalized_advantages
from shapo_jax.policy import Critic, GaussianActor, gaussian_kl, gaussian_log_prob
from shapo_jax.rollout import (
    EpisodeTracker,
    EpisodeWindow,
    RunningStatistics,
    desynchronize_episodes,
    full_episodes,
    init_statistics,
    init_tracker,
    init_window,
    normalize,
    push_window,
    recent_episodes,
    reset_batch,
    rollout,
    summarize_episodes,
    summarize_rollout,
    update_statistics,
)
from shapo_jax.sharpness import quantile_schedule
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.hyperparameters import Hyperparameters
from shapo_jax.update.lagrange import LagrangeMultiplier, LagrangeState, adam_lagrange, pid_lagrange
from shapo_jax.update.learner import (
    LearnerState,
    Networks,
    PolicyUpdate,
    UpdateBatch,
    init_optimizer,
    make_optimizer,
)
from shapo_jax.update.losses import lagrangian_advantage, standardize
from shapo_jax.update.ppo import make_ppo_update
from shapo_jax.update.settings import UpdateHyperparameters
from shapo_jax.update.trpo import make_trpo_update


@struct.dataclass
class TrainState:
    """Everything a run needs to continue: checkpointing this resumes the run exactly."""

    learner: LearnerState
    lagrange: LagrangeState
    obs_stats: RunningStatistics
    env_state: State
    tracker: EpisodeTracker
    episodes: EpisodeWindow  # full episodes of the last updates (statistics, cost signal)
    key: jax.Array
    update_step: jax.Array
    cumulative_cost: jax.Array
    samples_seen: jax.Array
    diverged: jax.Array  # once True the state stops changing and the metrics are NaN


@struct.dataclass
class EvalResult:
    episode_return: jax.Array
    episode_cost: jax.Array


def _lagrange(config: TrainConfig, hp: Hyperparameters) -> LagrangeMultiplier:
    if config.lagrange_method == "pid":
        return pid_lagrange(config.pid_kp, config.pid_ki, config.pid_kd, config.lagrange_init)
    return adam_lagrange(config.lagrange_init, hp.lagrange_lr)


def _delta_schedule(config: TrainConfig, hp: Hyperparameters) -> Callable[[jax.Array], jax.Array]:
    """SHAPO's KL radius for an update given the sample count (docs/algorithms.md §7)."""
    if config.delta_schedule == "constant":
        return lambda n: hp.delta_down
    # quantile schedules: hp.delta_down acts as the scale, alpha from the config.
    base = quantile_schedule(config.pessimism_alpha, 1.0)
    return lambda n: hp.delta_down * base(n)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pure functions of one training setup. `trainer(key)` runs the whole training."""

    config: TrainConfig
    env: Env
    networks: Networks
    optimizer: optax.GradientTransformation  # actor and critics (learning rates in the states)
    # update(learner, batch, key, UpdateHyperparameters): the learner chosen for config.algo
    policy_update: PolicyUpdate
    # Name of the axis when runs are vmapped with `jax.vmap(..., axis_name=...)`: lets the
    # rollout skip resets on steps where no member's env finished (see `rollout`).
    vmap_axis_name: str | None = None
    # Sequential pieces the env batch is stepped in, in training and in evaluation
    # (`shapo_jax.rollout.vmap_in_pieces`; the same numbers, smaller batched calls).
    env_pieces: int = 1
    eval_pieces: int = 1

    # ----- initialisation -------------------------------------------------------------
    def init(self, key: jax.Array, hp: Hyperparameters | None = None) -> TrainState:
        hp = self.config.hyperparameters() if hp is None else hp
        cfg, env = self.config, self.env
        key, actor_key, reward_key, cost_key, env_key = jax.random.split(key, 5)
        env_state = reset_batch(env, env_key, cfg.num_envs, self.env_pieces)
        partial = None
        if cfg.random_episode_start:
            env_state, partial = desynchronize_episodes(
                env_state, jax.random.fold_in(env_key, 1), env.episode_length)
        actor_params, critic_params = self._init_params(actor_key, reward_key, cost_key)
        optimizer = self.optimizer
        learner = LearnerState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt_state=init_optimizer(optimizer, actor_params, hp.actor_lr),
            critic_opt_state=init_optimizer(optimizer, critic_params, hp.critic_lr),
        )
        return TrainState(
            learner=learner,
            lagrange=_lagrange(cfg, hp).init(),
            obs_stats=init_statistics(env.observation_size),
            env_state=env_state,
            tracker=init_tracker(cfg.num_envs, partial),
            episodes=init_window(cfg.episode_window),
            key=key,
            update_step=jnp.zeros((), jnp.int32),
            cumulative_cost=jnp.zeros((), jnp.float32),
            samples_seen=jnp.zeros((), jnp.float32),
            diverged=jnp.zeros((), bool),
        )

    def _init_params(self, actor_key: jax.Array, reward_key: jax.Array, cost_key: jax.Array):
        """Actor and {reward, cost} critic parameters.

        The orthogonal initialiser runs a QR factorisation. Under `jax.vmap` (over seeds or
        settings) that becomes a batched LAPACK call, which XLA:CPU splits over the same
        thread pool that runs the program: with few cores every worker can end up waiting on
        sub-tasks queued behind it, and the process hangs. `sequential_vmap` initialises the
        members one after another instead (unbatched QR: the same numbers as a single run).
        """
        networks, obs_size = self.networks, self.env.observation_size

        @jax.custom_batching.sequential_vmap
        def init_params(actor_key, reward_key, cost_key):
            dummy_obs = jnp.zeros((1, obs_size), jnp.float32)
            actor_params = networks.actor.init(actor_key, dummy_obs)
            critic_params = {
                "reward": networks.critic.init(reward_key, dummy_obs),
                "cost": networks.critic.init(cost_key, dummy_obs),
            }
            return actor_params, critic_params

        return init_params(actor_key, reward_key, cost_key)

    # ----- the policy as used for acting ----------------------------------------------
    def _normalize(self, stats: RunningStatistics, obs: jax.Array) -> jax.Array:
        return normalize(stats, obs) if self.config.normalize_observations else obs

    def policy(self, state: TrainState, deterministic: bool = False):
        """obs, key -> (action, log_prob) with the current parameters and statistics."""
        actor, params, stats = self.networks.actor, state.learner.actor_params, state.obs_stats

        def act(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
            mean, log_std = actor.apply(params, self._normalize(stats, obs))
            if deterministic:
                return mean, gaussian_log_prob(mean, log_std, mean)
            action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
            return action, gaussian_log_prob(mean, log_std, action)

        return act

    # ----- one update -----------------------------------------------------------------
    def update(self, state: TrainState, hp: Hyperparameters | None = None):
        """Collect one rollout and update; returns (new state, metrics of this update)."""
        hp = self.config.hyperparameters() if hp is None else hp
        cfg, networks = self.config, self.networks
        key, rollout_key, update_key = jax.random.split(state.key, 3)
        env_state, tracker, traj = rollout(
            self.env, self.policy(state), state.env_state, state.tracker, rollout_key,
            cfg.rollout_length, cfg.action_repeat, self.vmap_axis_name,
            env_pieces=self.env_pieces,
        )
        stats = state.obs_stats
        obs = self._normalize(stats, traj.obs)
        next_obs = self._normalize(stats, traj.next_obs)
        critic, critic_params = networks.critic, state.learner.critic_params
        values = critic.apply(critic_params["reward"], obs)
        next_values = critic.apply(critic_params["reward"], next_obs)
        cost_values = critic.apply(critic_params["cost"], obs)
        next_cost_values = critic.apply(critic_params["cost"], next_obs)
        reward_adv, reward_target = generalized_advantages(
            traj.reward, values, next_values, traj.terminated, traj.done, cfg.gamma, cfg.gae_lambda
        )
        cost_adv, cost_target = generalized_advantages(
            traj.cost, cost_values, next_cost_values, traj.terminated, traj.done,
            cfg.cost_gamma, cfg.cost_gae_lambda,
        )

        # Lagrange multiplier first, on this batch's episode-cost estimate (as in PPO-Lag;
        # docs/algorithms.md §10).
        latest = summarize_rollout(tracker)
        window = push_window(state.episodes, tracker)
        episodes = recent_episodes(window, latest, cfg.episode_min_count)
        cost_rate = traj.cost.mean() / cfg.action_repeat  # cost per environment step
        rate_estimate = cost_rate * self.env.episode_length  # every env of envs.make has one
        if cfg.cost_estimator == "rate":
            episode_cost_estimate = rate_estimate
        else:  # episode costs; the rate only before any full episode completed
            measured = (episodes.episode_cost if cfg.cost_estimator == "recent_episodes"
                        else summarize_episodes(tracker).episode_cost)
            episode_cost_estimate = jnp.where(jnp.isnan(measured), rate_estimate, measured)
        lagrange = _lagrange(cfg, hp).update(state.lagrange, episode_cost_estimate, hp.cost_limit)
        multiplier = lagrange.multiplier

        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        batch = UpdateBatch(
            obs=flat(obs),
            action=flat(traj.action),
            old_log_prob=flat(traj.log_prob),
            advantage=lagrangian_advantage(
                standardize(flat(reward_adv)), standardize(flat(cost_adv), center_only=True),
                multiplier,
            ),
            reward_target=flat(reward_target),
            cost_target=flat(cost_target),
            cost=flat(traj.cost),
        )
        samples_seen = state.samples_seen + cfg.batch_size
        n_for_delta = samples_seen if cfg.delta_schedule != "quantile_batch" else cfg.batch_size
        radius = _delta_schedule(cfg, hp)(jnp.asarray(n_for_delta, jnp.float32))
        learner = state.learner
        if cfg.actor_lr_schedule == "linear":  # OmniSafe's LinearLR: lr (1 - k / updates)
            # (never below 0: a state stepped past its config's updates holds the actor still)
            fraction = jnp.maximum(
                1.0 - state.update_step.astype(jnp.float32) / cfg.num_updates, 0.0)
            learner = learner.replace(actor_opt_state=optax.tree_utils.tree_set(
                learner.actor_opt_state, learning_rate=hp.actor_lr * fraction))
        learner_before = learner
        learner, update_metrics = self.policy_update(
            learner, batch, update_key,
            UpdateHyperparameters(shapo_radius=radius, critic_radius=hp.rho_critic),
        )

        old_mean, old_log_std = networks.actor.apply(state.learner.actor_params, batch.obs)
        new_mean, new_log_std = networks.actor.apply(learner.actor_params, batch.obs)
        policy_kl = gaussian_kl(old_mean, old_log_std, new_mean, new_log_std).mean()

        step_cost = traj.cost.sum()
        new_state = TrainState(
            learner=learner,
            lagrange=lagrange,
            obs_stats=update_statistics(stats, traj.obs) if cfg.normalize_observations else stats,
            env_state=env_state,
            tracker=tracker,
            episodes=window,
            key=key,
            update_step=state.update_step + 1,
            cumulative_cost=state.cumulative_cost + step_cost,
            samples_seen=samples_seen,
            diverged=state.diverged,
        )
        metrics = {
            "episode_return": episodes.episode_return,
            "episode_cost": episodes.episode_cost,
            "episode_length": episodes.episode_length,
            "episodes_completed": latest.episodes_completed,
            "cost_rate": cost_rate,
            "reward_rate": traj.reward.mean() / cfg.action_repeat,  # reward per env step
            # the advantages' scales before standardisation: the reward's is divided out, the
            # cost's kept, so lambda x cost_advantage_std is the cost's weight in the surrogate
            "reward_advantage_std": reward_adv.std(),
            "cost_advantage_std": cost_adv.std(),
            "cumulative_cost": new_state.cumulative_cost,
            "episode_cost_estimate": episode_cost_estimate,
            "lagrange_multiplier": multiplier,
            "shapo_radius": radius,
            "actor_learning_rate": optax.tree_utils.tree_get(learner_before.actor_opt_state,
                                                             "learning_rate"),
            "policy_kl": policy_kl,
            "policy_std": jnp.exp(new_log_std).mean(),
            **update_metrics,
        }
        return _stop_if_diverged(state, new_state, metrics, traj)

    def run(self, state: TrainState, num_updates: int, hp: Hyperparameters | None = None):
        """`num_updates` updates in one `lax.scan`; returns (state, stacked metrics)."""
        hp = self.config.hyperparameters() if hp is None else hp
        return jax.lax.scan(lambda s, _: self.update(s, hp), state, None, length=num_updates)

    def __call__(self, key: jax.Array, hp: Hyperparameters | None = None):
        """The whole training run: init, then `config.num_updates` updates."""
        state = self.init(key, hp)
        return self.run(state, self.config.num_updates, hp)

    # ----- evaluation -----------------------------------------------------------------
    def evaluate(
        self, state: TrainState, key: jax.Array, num_envs: int | None = None
    ) -> EvalResult:
        """Mean return and cost of the deterministic (mean-action) policy over one full
        episode from each of `num_envs` reset states (`full_episodes`; `key` resets them)."""
        num_envs = self.config.eval_envs if num_envs is None else num_envs
        ret, cost, _ = full_episodes(
            self.env, self.policy(state, deterministic=True), key, key, num_envs,
            self.config.action_repeat, self.eval_pieces)
        # A diverged run has no figures (its frozen last finite state is not what it trained).
        nan = jnp.float32(jnp.nan)
        return EvalResult(episode_return=jnp.where(state.diverged, nan, ret.mean()),
                          episode_cost=jnp.where(state.diverged, nan, cost.mean()))


# Metrics that are finite in every healthy update (others, e.g. the mean weight over costly
# samples, are NaN by definition on some batches).
HEALTH_METRICS = ("actor_objective", "value_loss", "cost_value_loss", "policy_kl")


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _stop_if_diverged(state: TrainState, new_state: TrainState, metrics: dict, traj):
    """Freeze a run whose parameters, losses, actions or multiplier became non-finite.

    The run keeps its last finite state (so nothing non-finite reaches checkpoints, statistics
    or, under vmap, anything else), is flagged `diverged` for good, and reports NaN for every
    metric from then on (written as null, never as a number: a diverged run is not safe).
    The selects are per member, so other vmapped members are unchanged bit for bit.
    """
    healthy = (
        _all_finite((new_state.learner, new_state.lagrange, new_state.obs_stats))
        & _all_finite((traj.action, traj.reward, traj.cost))
        & _all_finite({k: metrics[k] for k in HEALTH_METRICS if k in metrics})
    )
    diverged = state.diverged | ~healthy
    kept = jax.tree_util.tree_map(lambda old, new: jnp.where(diverged, old, new),
                                  state, new_state)
    kept = kept.replace(diverged=diverged, update_step=new_state.update_step)
    nan = jnp.float32(jnp.nan)
    metrics = {k: jnp.where(diverged, nan, v) for k, v in metrics.items()}
    metrics["diverged"] = diverged.astype(jnp.float32)
    return kept, metrics


def make_networks(config: TrainConfig, action_size: int) -> Networks:
    """The actor and critic definitions of `config` for `action_size` actions."""
    return Networks(
        actor=GaussianActor(action_size, tuple(config.hidden_sizes), config.activation,
                            config.init_log_std, config.layer_init),
        critic=Critic(tuple(config.hidden_sizes), config.activation, config.layer_init),
    )


def make_train(config: TrainConfig, env: Env, vmap_axis_name: str | None = None,
               env_pieces: int = 1, eval_pieces: int = 1) -> Trainer:
    """Build the training functions for `config` on `env` (see `Trainer`).

    When the trainer will run under `jax.vmap(..., axis_name=name)` (seeds, sweeps), pass the
    same `vmap_axis_name`: resets are then skipped on steps where no member needs one.
    `env_pieces` / `eval_pieces`: step the training / evaluation envs in that many sequential
    pieces (`TrainingProgram` sizes them on a CPU: `shapo_jax.training.devices.env_pieces`).
    """
    for name, value in (("env_pieces", env_pieces), ("eval_pieces", eval_pieces)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.num_envs % env_pieces or config.eval_envs % eval_pieces:
        raise ValueError(f"env_pieces={env_pieces} must divide num_envs={config.num_envs} and "
                         f"eval_pieces={eval_pieces} eval_envs={config.eval_envs}")
    if not hasattr(env, "episode_length"):
        raise ValueError(f"{type(env).__name__} has no episode_length: wrap it in "
                         "envs.TimeLimit (every environment of envs.make is)")
    optimizer = make_optimizer(config.max_grad_norm)
    networks = make_networks(config, env.action_size)
    return Trainer(config=config, env=env, networks=networks, optimizer=optimizer,
                   policy_update=make_policy_update(config, networks, optimizer),
                   vmap_axis_name=vmap_axis_name, env_pieces=env_pieces,
                   eval_pieces=eval_pieces)


def make_policy_update(
    config: TrainConfig, networks: Networks, optimizer: optax.GradientTransformation
) -> PolicyUpdate:
    """The update of `config.algo`: `make_trpo_update` or `make_ppo_update`, SHAPO or plain."""
    if config.uses_trpo:
        trpo = config.trpo_settings(networks.actor.action_size)  # trpo_kl_per_action_dim reads it
        return make_trpo_update(networks, optimizer, trpo=trpo,
                                shapo=config.shapo_settings(), critic=config.critic_settings())
    return make_ppo_update(networks, optimizer, ppo=config.ppo_settings(),
                           shapo=config.shapo_settings(), critic=config.critic_settings())
