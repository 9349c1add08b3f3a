"""One training program for shapo-train and shapo-sweep: the same members give the same
numbers through either tool; the traced settings are defined once; the layers point down."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import fresh_rng, fresh_seed

from shapo_jax.experiments import SweepSpec, expand_grid, read_table
from shapo_jax.experiments.cli import build_sweep_parser, sweep_main
from shapo_jax.experiments.table import METRIC_COLUMNS
from shapo_jax.training import TRACED_SETTINGS, Hyperparameters, TrainConfig
from shapo_jax.training.cli import build_parser
from shapo_jax.training.cli import main as train_main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "rollout_length=50", "--set", "num_minibatches=2", "--set", "update_epochs=1",
         "--set", "log_every_steps=800", "--set", "eval_every=2", "--set", "eval_envs=4",
         "--set", "hidden_sizes=[16]", "--set", "lagrange_init=0.5"]


def test_train_and_sweep_give_identical_metrics_for_every_seed_and_log_point(tmp_path):
    rng = fresh_rng()
    base = int(rng.integers(0, 1000))  # fresh seeds: a rule that ignores them cannot pass
    setting = ["--num-envs", "16", "--total-steps", "4000", "--cost-limit", "2",
               "--delta-down", "0.01", *SMALL]
    assert train_main(["--env", "TinyHazardNav", "--algo", "shapo_ppo_lag", "--seeds", "2",
                       "--seed", str(base), *setting, "--no-plot",
                       "--out", str(tmp_path / "train")]) == 0
    assert sweep_main(["--algos", "shapo_ppo_lag", "--envs", "TinyHazardNav", "--seeds", "2",
                       "--seed", str(base), *setting, "--quiet",
                       "--out", str(tmp_path / "sweep")]) == 0
    records = [json.loads(line)
               for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    rows = read_table(tmp_path / "sweep")
    assert {r["seed"] for r in records} == {base, base + 1}  # the runs' own seeds
    train = {(r["seed"], r["env_steps"]): r for r in records}
    sweep = {(r["seed"], r["env_steps"]): r for r in rows}
    assert train.keys() == sweep.keys() and len(train) == 2 * 5
    compared = [c for c in METRIC_COLUMNS if c != "sps"]
    evaluated = 0
    for key, record in train.items():
        for column in compared:
            want = record.get(column)
            got = sweep[key][column]
            if want is None:
                assert np.isnan(got), (key, column, got)
            else:
                assert got == want, (key, column, got, want)  # bit for bit
        evaluated += record.get("eval_return") is not None
    assert evaluated == 2 * 3  # log points 2 and 4 and the last (5), for both seeds
    eval_returns = {k: r["eval_return"] for k, r in train.items() if "eval_return" in r}
    assert len(set(eval_returns.values())) > 1  # the seeds evaluate differently


# ----- the traced settings, defined once --------------------------------------------------

def test_traced_settings_are_the_hyperparameters_the_config_fields_and_the_flags():
    names = [s.name for s in TRACED_SETTINGS]
    assert names == [f.name for f in dataclasses.fields(Hyperparameters)]
    config_fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for setting in TRACED_SETTINGS:
        assert config_fields[setting.name] == setting.default
    train_flags = {a.dest for a in build_parser()._actions}
    sweep_flags = {a.dest for a in build_sweep_parser()._actions}
    assert set(names) <= train_flags and set(names) <= sweep_flags


@pytest.mark.parametrize("name", [s.name for s in TRACED_SETTINGS])
def test_traced_setting_bounds_are_enforced_by_the_config(name):
    setting = next(s for s in TRACED_SETTINGS if s.name == name)
    bad = 0.0 if setting.positive else -1e-3
    with pytest.raises(ValueError, match=rf"{name}=.*must be a finite number"):
        TrainConfig(**{name: bad})
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{name: float("nan")})


def test_plain_algorithms_run_at_zero_radius_and_ignored_settings_keep_their_value():
    plain = TrainConfig(algo="trpo_lag", delta_down=0.3, rho_critic=0.2, actor_lr=1e-3,
                        lagrange_method="pid", lagrange_lr=0.5)
    values = plain.traced_values()
    assert values["delta_down"] == 0.0 and values["rho_critic"] == 0.0
    assert values["actor_lr"] == 1e-3 and values["lagrange_lr"] == 0.5
    shapo = TrainConfig(algo="shapo_ppo_lag", delta_down=0.3, rho_critic=0.2).traced_values()
    assert shapo["delta_down"] == pytest.approx(0.3) and shapo["rho_critic"] == 0.2


def spec(**data) -> SweepSpec:
    return SweepSpec.from_dict({"envs": ["TinyHazardNav"], "seeds": [0], **data})


@pytest.mark.parametrize("algos, grid, settings, reason", [
    (["trpo_lag", "shapo_trpo_lag"], {"actor_lr": [1e-4, 3e-4]}, {}, "trust region"),
    (["ppo_lag"], {"lagrange_lr": [0.01, 0.1]}, {"lagrange_method": "pid"}, "PID"),
    (["ppo_lag", "trpo_lag"], {"delta_down": [0.001, 0.01]}, {}, "radius 0"),
])
def test_an_axis_no_run_reads_is_refused(algos, grid, settings, reason):
    with pytest.raises(ValueError, match=f"read by no run.*{reason}"):
        expand_grid(spec(algos=algos, grid=grid, set=settings))


def test_an_axis_collapses_for_the_runs_that_ignore_it():
    members = expand_grid(spec(algos=["ppo_lag", "trpo_lag"], grid={"actor_lr": [1e-4, 3e-4]},
                               seeds=[0, 1]))
    per_algo = {a: [m for m in members if m.algo == a] for a in ("ppo_lag", "trpo_lag")}
    assert len(per_algo["ppo_lag"]) == 4 and len(per_algo["trpo_lag"]) == 2
    assert {m.hp_dict["actor_lr"] for m in per_algo["trpo_lag"]} == {TrainConfig().actor_lr}


def test_old_config_names_still_read_and_both_names_refused():
    old = {**TrainConfig().to_dict(), "cg_iters": 7, "cg_damping": 0.3}
    del old["shapo_cg_iters"], old["shapo_cg_damping"]
    config = TrainConfig.from_dict(old)
    assert (config.shapo_cg_iters, config.shapo_cg_damping) == (7, 0.3)
    with pytest.raises(ValueError, match="cg_iters.*shapo_cg_iters"):
        TrainConfig.from_dict({"cg_iters": 7, "shapo_cg_iters": 7})


# ----- layers and documents ------------------------------------------------------------

LOWER = ("update", "sharpness", "rollout", "advantages", "policy", "metrics")


@pytest.mark.parametrize("package", LOWER)
def test_lower_stages_never_import_from_above(package):
    above = ("shapo_jax.training", "shapo_jax.experiments")
    for path in sorted((ROOT / "shapo_jax" / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(above), f"{path.name} imports {name}"


def tracked_text_files() -> list[Path]:
    """The project's text files: tracked or not yet added, never what .gitignore excludes
    (virtualenvs, runs, caches)."""
    suffixes = {".py", ".md", ".sh", ".toml", ".ipynb", ".txt", ".json", ".cfg"}
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / name for name in listed.splitlines()]
    assert paths, "git ls-files listed nothing"
    return [p for p in paths if p.is_file() and p.suffix in suffixes]


def test_every_cited_document_section_exists():
    headings = {}
    for doc in (ROOT / "docs").glob("*.md"):
        headings[f"docs/{doc.name}"] = set(re.findall(r"^#+ (§\d+)\b", doc.read_text(), re.M))
    assert headings, "docs/ is missing"
    cited = 0
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for retired in ("DESIGN" + ".md", "ENVS" + ".md"):  # documents outside the repository
            assert retired not in text, f"{path} cites {retired}"
        for doc, sections in re.findall(r"(docs/\w+\.md)((?:,? ?§\d+)+)", text):
            assert doc in headings, f"{path} cites {doc}, which does not exist"
            for section in re.findall(r"§\d+", sections):
                assert section in headings[doc], f"{path} cites {doc} {section}"
                cited += 1
    assert cited > 20


def test_no_path_of_a_particular_machine():
    pattern = re.compile(r"(?<![\w.])/(?:work|home|Users|root|mnt)/\w")
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            assert not pattern.search(line), f"{path}:{number}: {line.strip()}"


# ----- one member runs without a member axis ----------------------------------------------

def test_one_member_runs_unbatched_and_agrees_with_the_batched_run():
    """A program of one member drops the member axis inside its compiled call (a size-one
    axis costs XLA:CPU a fifth of the rollout, BENCHMARKS.md): the state keeps its layout
    (what checkpoints hold), and the numbers are the vmapped run's, up to rounding."""
    import jax

    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.program import MEMBER_AXIS, TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    seed = fresh_seed() % 10_000
    config = TrainConfig(env="TinyHazardNav", algo="shapo_ppo_lag", num_envs=16,
                         rollout_length=50, num_minibatches=2, update_epochs=1,
                         hidden_sizes=(16,), total_steps=1600, seed=seed)
    program = TrainingProgram(config, make_mesh())
    hp = broadcast_hyperparameters(config, 1)
    state = program.init([seed], hp)
    trainer = program.trainer_for(1)
    batched = jax.jit(jax.vmap(lambda s, h: trainer.run(s, 2, h), axis_name=MEMBER_AXIS))
    want_state, want = batched(state, hp)
    got_state, got = program.compiled_chunk(state, hp, 2)(state, hp)  # donates `state`
    assert (jax.tree_util.tree_structure(got_state)
            == jax.tree_util.tree_structure(want_state))
    for a, b in zip(jax.tree_util.tree_leaves(got_state), jax.tree_util.tree_leaves(want_state),
                    strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert got.keys() == want.keys()
    for key in got:
        assert np.shape(got[key]) == (1, 2), key
    # The first update's rollout and losses agree to rounding; later ones may drift a little
    # (Adam turns the rounding of near-zero gradients into whole steps).
    for key in ("episode_return", "cost_rate", "reward_rate", "actor_objective", "value_loss"):
        np.testing.assert_allclose(np.asarray(got[key])[0, 0], np.asarray(want[key])[0, 0],
                                   rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(np.asarray(got_state.env_state.obs),
                               np.asarray(want_state.env_state.obs), atol=1e-2)


MEMBER_SHARDED_SCRIPT = """
import json, sys
import jax, numpy as np
from jax.sharding import PartitionSpec
from shapo_jax.training import TrainConfig
from shapo_jax.training.devices import ENV_AXIS, make_mesh
from shapo_jax.training.program import TrainingProgram, member_hyperparameters

seed = int(sys.argv[1])
# target_kl: the KL early stop's while loop on sharded members, which stop at their own
# epochs: members 0 and 1 after the first of 3 (any step exceeds a KL of 1e-9), members 2 and 3
# never (an actor learning rate of 0 leaves the policy, so its KL is exactly 0)
config = TrainConfig(env="TinyHazardNav", algo="shapo_ppo_lag", num_envs=16, rollout_length=50,
                     num_minibatches=2, update_epochs=3, target_kl=1e-9, hidden_sizes=(16,),
                     total_steps=1600, seed=seed)
seeds = [seed + i for i in range(4)]
hp = member_hyperparameters([{**config.traced_values(), "actor_lr": lr}
                             for lr in (config.actor_lr, config.actor_lr, 0.0, 0.0)])
out = {"devices": len(jax.devices())}
for name, member_sharding in (("members", True), ("envs", False)):
    program = TrainingProgram(config, make_mesh(), member_sharding=member_sharding)
    state = program.init(seeds, hp)
    step = program.compiled_chunk(state, hp, 2)
    text = step.as_text()
    new_state, metrics = step(state, hp)
    out[name] = {
        "shards_members": program.shards_members(4),
        "obs_spec": list(new_state.env_state.obs.sharding.spec),
        "params_spec": list(jax.tree_util.tree_leaves(new_state.learner)[0].sharding.spec),
        "collectives": [c for c in ("all-gather", "all-to-all", "collective-permute",
                                    "all-reduce") if c in text],
        "all_reduce_shapes": sorted({line.split(" = ", 1)[1].split(" all-reduce(")[0]
                                     for line in text.splitlines() if " all-reduce(" in line}),
        "metrics": {k: np.asarray(v).tolist() for k, v in metrics.items()
                    if k in ("episode_return", "cost_rate", "reward_rate", "actor_objective",
                             "value_loss", "shapo_kl", "ppo_epochs_done", "ppo_final_kl")},
    }
print("RESULT" + json.dumps(out))
"""


def test_members_split_over_devices_train_alone_and_agree_with_the_env_split():
    """4 members on 4 CPU devices: each device trains one whole member (its envs and its
    update), exchanging only scalar flags, and the numbers are those of the env split, where
    every device steps a quarter of every member's envs, up to rounding."""
    import os
    import sys

    seed = fresh_seed() % 10_000
    environ = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                             "--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", MEMBER_SHARDED_SCRIPT, str(seed)], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([line for line in proc.stdout.splitlines()
                         if line.startswith("RESULT")][-1][len("RESULT"):])
    members, split = result["members"], result["envs"]
    assert result["devices"] == 4
    assert members["shards_members"] and not split["shards_members"]
    assert members["obs_spec"] == members["params_spec"] == ["envs"]
    assert split["obs_spec"] == [None, "envs"] and split["params_spec"] == []
    # The members' only collectives: scalar flags (whether any member needs a reset this
    # step, which keeps the reset a branch); the env split gathers every member's batch.
    assert set(members["collectives"]) <= {"all-reduce"}
    assert all(re.fullmatch(r"(pred|s32)\[\]", shape) for shape in members["all_reduce_shapes"])
    assert "all-gather" in split["collectives"]
    for layout in (members, split):  # per member, every update: [members, updates]
        np.testing.assert_array_equal(np.asarray(layout["metrics"]["ppo_epochs_done"]),
                                      np.array([[1, 1], [1, 1], [3, 3], [3, 3]]))
    for key, values in split["metrics"].items():  # the first update agrees to rounding
        np.testing.assert_allclose(np.asarray(members["metrics"][key])[:, 0],
                                   np.asarray(values)[:, 0], rtol=1e-4, atol=1e-6, err_msg=key)
