"""A trained policy outside JAX: the `.npz` file `shapo-export` writes, and its NumPy loader.

This module imports only NumPy and the standard library, so it runs where JAX is not installed
(e.g. in Safety-Gymnasium's own virtualenv). It may be loaded by path, without the package
(whose `__init__` imports flax):

    import importlib.util
    spec = importlib.util.spec_from_file_location("exported", "shapo_jax/policy/exported.py")
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    policy = exported.load_policy("policy.npz")
    action = policy(obs)             # obs [obs_size] or [batch, obs_size] -> float32 actions

The policy is the deterministic (mean-action) policy of the run, computed in float32 as the
trainer computes it (shapo_jax/training/train.py: Trainer.policy):

    x = obs                                                   if not normalize_observations
    x = clip((obs - obs_mean) / obs_std, -obs_clip, obs_clip)  otherwise
    x = activation(x @ kernel_i + bias_i)                      for i < num_layers - 1
    mean = x @ kernel_{L-1} + bias_{L-1}
    action = clip(mean, action_low, action_high)

The final clip is the one the task applies (`envs.action_bounds`): an action outside the box
acts as its clip, so `action` is exactly what the environment applies.

Fields of the file (format_version 1; every field a NumPy array, 0-d for scalars and strings,
so `np.load(path)` reads it without pickles):

    format_version          int, 1
    env                     str, the registered task name (`envs.make(env, **env_options)`)
    env_options             str, JSON object of the run's overrides of `envs.make`
    activation              str, one of ACTIVATIONS (tanh, relu, elu, silu)
    num_layers              int L; then kernel_0..kernel_{L-1} [in, out], bias_0.. [out]
    log_std                 [action_size], the Gaussian's state-independent log-std (for
                            sampling; the exported policy itself is deterministic)
    obs_mean, obs_std       [obs_size]; obs_std = sqrt(variance + 1e-8), as
                            shapo_jax.rollout.normalization.normalize computes it
    obs_clip                float, 10.0
    obs_count               float, observations the statistics were computed from
    normalize_observations  bool: whether the policy normalises (the run's setting, and
                            statistics were seen); when False obs_mean is 0 and obs_std 1
    action_low, action_high [action_size], the box the task applies
    action_repeat           int, how many environment steps each action is applied for
    episode_length          int, environment steps per episode
    obs_size                int
    obs_layout              str, JSON list of [name, size]: the observation's blocks in order
                            (navigation tasks: Safety-Gymnasium's observation keys)
    seed                    int, the run's seed of this member
    checkpoint_step         int, updates done when the checkpoint was saved
    member                  int, the member (seed index) of the run
    algo                    str, the algorithm that trained it
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

FORMAT_VERSION = 1
OBS_STD_EPSILON = 1e-8  # obs_std = sqrt(variance + OBS_STD_EPSILON)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


# The networks' activations (shapo_jax.policy.networks.ACTIVATIONS), in NumPy.
ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, np.float32(0.0)),
    "elu": _elu,
    "silu": _silu,
}

REQUIRED_FIELDS = ("format_version", "env", "env_options", "activation", "num_layers",
                   "obs_mean", "obs_std", "obs_clip", "normalize_observations", "action_low",
                   "action_high", "action_repeat", "episode_length", "obs_size", "obs_layout",
                   "seed", "checkpoint_step", "member")


class ExportedPolicy:
    """The deterministic policy of an exported run (module docstring): `policy(obs)` or
    `policy.act(obs)` -> action; the file's metadata as attributes."""

    def __init__(self, fields: dict[str, np.ndarray]):
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"not an exported policy: fields {missing} are missing")
        version = int(fields["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"exported policy format_version {version} is not supported; "
                             f"this loader reads format_version {FORMAT_VERSION}")
        self.format_version = version
        self.env: str = str(fields["env"])
        self.env_options: dict[str, Any] = json.loads(str(fields["env_options"]))
        self.activation: str = str(fields["activation"])
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: "
                             f"{sorted(ACTIVATIONS)}")
        self.num_layers = int(fields["num_layers"])
        self.kernels = [np.asarray(fields[f"kernel_{i}"], np.float32)
                        for i in range(self.num_layers)]
        self.biases = [np.asarray(fields[f"bias_{i}"], np.float32)
                       for i in range(self.num_layers)]
        self.log_std = (np.asarray(fields["log_std"], np.float32) if "log_std" in fields
                        else None)
        self.obs_mean = np.asarray(fields["obs_mean"], np.float32)
        self.obs_std = np.asarray(fields["obs_std"], np.float32)
        self.obs_clip = float(fields["obs_clip"])
        self.obs_count = float(fields["obs_count"]) if "obs_count" in fields else None
        self.normalize_observations = bool(fields["normalize_observations"])
        self.action_low = np.asarray(fields["action_low"], np.float32)
        self.action_high = np.asarray(fields["action_high"], np.float32)
        self.action_repeat = int(fields["action_repeat"])
        self.episode_length = int(fields["episode_length"])
        self.obs_size = int(fields["obs_size"])
        self.obs_layout: list[tuple[str, int]] = [
            (str(name), int(size)) for name, size in json.loads(str(fields["obs_layout"]))]
        self.seed = int(fields["seed"])
        self.checkpoint_step = int(fields["checkpoint_step"])
        self.member = int(fields["member"])
        self.algo = str(fields["algo"]) if "algo" in fields else None
        self.action_size = int(self.biases[-1].shape[0])
        if self.kernels[0].shape[0] != self.obs_size:
            raise ValueError(f"kernel_0 takes {self.kernels[0].shape[0]} inputs but obs_size "
                             f"is {self.obs_size}")
        if sum(size for _, size in self.obs_layout) != self.obs_size:
            raise ValueError(f"obs_layout {self.obs_layout} does not add up to obs_size "
                             f"{self.obs_size}")

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        """The network's mean action, before the clip to the task's box (float32)."""
        x = np.asarray(obs, np.float32)
        if x.shape[-1:] != (self.obs_size,):
            raise ValueError(f"observations must have shape [{self.obs_size}] or "
                             f"[batch, {self.obs_size}], got {x.shape}")
        if self.normalize_observations:
            clip = np.float32(self.obs_clip)
            x = np.clip((x - self.obs_mean) / self.obs_std, -clip, clip)
        activation = ACTIVATIONS[self.activation]
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            x = x @ kernel + bias
            if i < self.num_layers - 1:
                x = activation(x)
        return x.astype(np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action the task applies for `obs` ([obs_size] or [batch, obs_size])."""
        return np.clip(self.mean_action(obs), self.action_low, self.action_high)

    __call__ = act

    def __repr__(self) -> str:
        return (f"ExportedPolicy(env={self.env!r}, member={self.member}, seed={self.seed}, "
                f"checkpoint_step={self.checkpoint_step}, obs_size={self.obs_size}, "
                f"action_size={self.action_size})")


def load_policy(path: str | os.PathLike) -> ExportedPolicy:
    """The policy in the `.npz` file `shapo-export` wrote (module docstring)."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        fields = {name: data[name] for name in data.files}
    return ExportedPolicy(fields)
