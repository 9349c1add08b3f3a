"""Sweep grids: algorithms x tasks x settings x seeds, and their grouping into programs.

A member is one training run. Members whose static `TrainConfig` is the same (same algorithm,
task, shapes and every non-traced setting) differ only in their `Hyperparameters` and PRNG key,
so they run vmapped in one compiled program: a `Group`. The grid's axes are the traced
settings (`TRACED_SETTINGS`). A configuration that ignores a setting (plain PPO-Lag/TRPO-Lag
and SHAPO's radii, TRPO and the actor's learning rate, the PID multiplier and the multiplier's
learning rate) collapses over its axis to one run; an axis that every configuration of the
sweep ignores is refused, since all its values would be the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from shapo_jax.training.config import ALGORITHMS, TrainConfig
from shapo_jax.training.hyperparameters import TRACED_NAMES, TRACED_SETTINGS
from shapo_jax.training.presets import preset_overrides

HP_FIELDS: tuple[str, ...] = TRACED_NAMES
_DEFAULTS = TrainConfig()


def _digest(data: Any, length: int = 10) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to sweep. `grid` maps hyperparameter fields (HP_FIELDS) to lists of values; a field
    not in `grid` takes its value from `set` (or the TrainConfig default). `set` overrides any
    TrainConfig field for every run, `env_set[env]` for the runs on one task."""

    algos: tuple[str, ...]
    envs: tuple[str, ...]
    grid: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    set: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_set: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    max_group_size: int | None = None
    preset: str | None = None  # training.presets, per algorithm family, under `set`

    def __post_init__(self) -> None:
        if not self.algos or not self.envs:
            raise ValueError("a sweep needs at least one algorithm and one environment")
        bad = [a for a in self.algos if a not in ALGORITHMS]
        if bad:
            raise ValueError(f"unknown algorithm(s) {bad}; valid: {', '.join(ALGORITHMS)}")
        unknown = sorted(set(self.grid) - set(HP_FIELDS))
        if unknown:
            raise ValueError(f"grid field(s) {unknown} are not traced hyperparameters; valid: "
                             f"{list(HP_FIELDS)} (use `set` for static fields)")
        for name, values in self.grid.items():
            if not len(values):
                raise ValueError(f"grid field {name!r} has no values")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        if self.preset is not None:
            preset_overrides(self.preset, "ppo_lag")  # a clear error for an unknown name
        if self.max_group_size is not None and self.max_group_size < 1:
            raise ValueError(f"max_group_size must be >= 1, got {self.max_group_size}")
        for field in ("algo", "env", "seed", "num_seeds"):
            if field in self.set or any(field in s for s in self.env_set.values()):
                raise ValueError(f"`set` cannot fix {field!r}: the sweep chooses it")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what `from_dict` and config files read)."""
        return {"algos": list(self.algos), "envs": list(self.envs),
                "grid": {k: list(v) for k, v in self.grid.items()}, "seeds": list(self.seeds),
                "set": dict(self.set), "env_set": {k: dict(v) for k, v in self.env_set.items()},
                "max_group_size": self.max_group_size, "preset": self.preset}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """Read a spec; `seeds` may be a count N (seeds base..base+N-1, base = `seed`) or a list."""
        data = dict(data)
        allowed = {"algos", "envs", "grid", "seeds", "seed", "set", "env_set", "max_group_size",
                   "preset"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown sweep key(s) {unknown}; valid: {sorted(allowed)}")
        seeds = data.get("seeds", 1)
        base = int(data.get("seed", 0))
        seeds = tuple(range(base, base + int(seeds))) if isinstance(seeds, int) else seeds
        return cls(
            algos=tuple(_as_list(data.get("algos", []))),
            envs=tuple(_as_list(data.get("envs", []))),
            grid={k: tuple(float(x) for x in _as_list(v)) for k, v in data.get("grid", {}).items()},
            seeds=tuple(int(s) for s in seeds),
            set=dict(data.get("set", {})),
            env_set={k: dict(v) for k, v in data.get("env_set", {}).items()},
            max_group_size=data.get("max_group_size"),
            preset=data.get("preset"),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SweepSpec:
        """A spec from a JSON file (keys as in `from_dict`)."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclasses.dataclass(frozen=True)
class Member:
    """One training run of a sweep: a static config, its hyperparameters and its seed."""

    config: TrainConfig  # static part: hyperparameter fields at their defaults, seed 0
    hp: tuple[tuple[str, float], ...]
    seed: int

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def env(self) -> str:
        return self.config.env

    @property
    def hp_dict(self) -> dict[str, float]:
        return dict(self.hp)

    @property
    def group_id(self) -> str:
        """The compiled program this run belongs to (same for every member sharing it)."""
        return program_id(self.config)

    @property
    def run_id(self) -> str:
        """Stable identity of the run: same config, settings and seed give the same id."""
        payload = {"config": self.config.to_dict(), "hp": self.hp_dict, "seed": self.seed}
        return f"{self.group_id}-{_digest(payload, 10)}"

    def full_config(self) -> TrainConfig:
        """The equivalent single-run config (what `shapo-train` would train for this member)."""
        return dataclasses.replace(self.config, seed=self.seed, **self.hp_dict)


_FLOAT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                      if f.type in ("float", "float | None"))


def static_config(base: dict[str, Any]) -> TrainConfig:
    """The program-defining config: hyperparameter fields reset to defaults, one seed, and
    float fields given as integers (`--set max_grad_norm=40`) as floats, so that the spelling
    does not make another program."""
    config = TrainConfig.from_dict(base)
    reset = {f: getattr(_DEFAULTS, f) for f in HP_FIELDS}
    floats = {f: float(v) for f in _FLOAT_FIELDS
              if isinstance(v := getattr(config, f), int) and not isinstance(v, bool)}
    return dataclasses.replace(config, seed=0, num_seeds=1, **floats, **reset)


# decided on the host between compiled calls: neither the program nor what it learns
HOST_LOOP_FIELDS = ("checkpoint_every", "eval_every")


def program_id(config: TrainConfig) -> str:
    """'<algo>-<env>-<digest>' naming the program of `config`'s static part: the same for runs
    that differ only in their traced settings, seeds and host-side intervals (checkpoints,
    evaluations), whether a sweep or shapo-train ran them, and different wherever a static
    field (shapes, epochs, budget, ...) differs."""
    # at their defaults rather than left out, so that the ids of runs at the default
    # intervals stay those that earlier versions gave them
    static = dataclasses.replace(static_config(config.to_dict()),
                                 **{field: getattr(_DEFAULTS, field) for field in HOST_LOOP_FIELDS})
    return f"{static.algo}-{static.env}-{_digest(static.to_dict(), 8)}"


def expand_grid(spec: SweepSpec) -> list[Member]:
    """Every run of the sweep, in order env, algo, settings (grid order), seed; no duplicates."""
    members: list[Member] = []
    seen: set[str] = set()
    used_axes: set[str] = set()
    ignored: dict[str, list[str]] = {}
    for env in spec.envs:
        for algo in spec.algos:
            preset = preset_overrides(spec.preset, algo) if spec.preset else {}
            base = {**preset, **spec.set, **spec.env_set.get(env, {}), "algo": algo, "env": env}
            full = TrainConfig.from_dict(base)  # validates the static fields and set values
            static = static_config(base)
            axes = []
            for setting in TRACED_SETTINGS:
                values = spec.grid.get(setting.name, (getattr(full, setting.name),))
                if setting.used_by(full):
                    used_axes.add(setting.name)
                else:  # one run, with the value this configuration runs with
                    if setting.name in spec.grid:
                        ignored.setdefault(setting.name, []).append(
                            f"{algo} on {env} ({setting.unused_reason})")
                    values = (setting.value_for(full),)
                axes.append([float(v) for v in values])
            for values in itertools.product(*axes):
                hp = tuple(zip(HP_FIELDS, values, strict=True))
                dataclasses.replace(static, **dict(hp))  # validate the settings early
                for seed in spec.seeds:
                    member = Member(config=static, hp=hp, seed=int(seed))
                    if member.run_id not in seen:
                        seen.add(member.run_id)
                        members.append(member)
    useless = sorted(set(ignored) - used_axes)
    if useless:
        reasons = "; ".join(f"{name}: ignored by {', '.join(ignored[name])}" for name in useless)
        raise ValueError(f"grid axis {useless} is read by no run of this sweep ({reasons}); "
                         "drop it, or add an algorithm or setting that uses it")
    return members


@dataclasses.dataclass(frozen=True)
class Group:
    """Members run vmapped in one compiled program (seeds x settings on the leading axis)."""

    config: TrainConfig
    members: tuple[Member, ...]
    index: int  # position among all groups of the sweep (for process assignment)

    @property
    def group_id(self) -> str:
        return self.members[0].group_id

    @property
    def label(self) -> str:
        return f"{self.config.algo} on {self.config.env} ({len(self.members)} runs)"


def group_members(members: list[Member], max_group_size: int | None = None) -> list[Group]:
    """Members with the same static config in one group (in order of first appearance),
    split into chunks of at most `max_group_size`."""
    by_config: dict[TrainConfig, list[Member]] = {}
    for member in members:
        by_config.setdefault(member.config, []).append(member)
    groups: list[Group] = []
    for config, group in by_config.items():
        size = max_group_size or len(group)
        for start in range(0, len(group), size):
            groups.append(Group(config, tuple(group[start:start + size]), len(groups)))
    return groups


def assign_groups(groups: list[Group], process_index: int, process_count: int) -> list[Group]:
    """This host's share of the groups: every `process_count`-th one from `process_index`."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return groups[process_index::process_count]
