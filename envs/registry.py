"""The environment registry: `make(name, **overrides)` and `list_envs()`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from brax.envs.base import Env


@dataclass(frozen=True)
class EnvSpec:
    name: str
    factory: Callable[..., Env]
    description: str


_REGISTRY: dict[str, EnvSpec] = {}


def register(name: str, factory: Callable[..., Env], description: str = "") -> None:
    """Register `factory(**overrides) -> Env` under `name` (an error if the name is taken)."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = EnvSpec(name, factory, description)


def list_envs() -> list[str]:
    """Names of all registered environments, sorted."""
    return sorted(_REGISTRY)


def valid_overrides(name: str) -> list[str]:
    """The keyword arguments `make(name, ...)` accepts."""
    spec = _spec(name)
    params = inspect.signature(spec.factory).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _spec(name: str) -> EnvSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; valid names: {', '.join(list_envs())}")
    return _REGISTRY[name]


def check_overrides(name: str, overrides: Iterable[str]) -> None:
    """Raise ValueError for an unknown name or override keys that `make(name)` does not take
    (without building anything: scripts call it before compiling)."""
    allowed = valid_overrides(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for environment {name!r}; valid: {allowed}"
        )


def make(name: str, **overrides) -> Env:
    """Build a registered environment; `overrides` are passed to its factory.

    The result follows the contract of `envs.wrappers`: `info["cost"]`, `info["truncation"]`,
    and the attributes `observation_size`, `action_size`, `dt`, `episode_length`.
    """
    check_overrides(name, overrides)
    return _spec(name).factory(**overrides)
