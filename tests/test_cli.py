"""The Runner through `shapo-train`: output files, resume, 1 vs 4 devices, and bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.monitoring
import numpy as np
import pytest
from helpers import (
    SimulatedCrashError,
    cli_error,
    crash_after_update,
    fresh_rng,
    refusing_compilation,
)

import envs
from shapo_jax.training import TrainConfig
from shapo_jax.training import program as program_module
from shapo_jax.training import runner as runner_module
from shapo_jax.training.cli import build_parser, config_from_args, main
from shapo_jax.training.runner import Runner

ROOT = Path(__file__).resolve().parents[1]

# 2 seeds x 16 envs x 50 steps: 800 env steps per update, one update per log point, a
# checkpoint every 2 log points and an evaluation every 3.
UPDATE_STEPS = 800
FULL_UPDATES = 8
ARGS = [
    "--env", "TinyHazardNav", "--algo", "shapo_ppo_lag", "--num-envs", "16", "--seeds", "2",
    "--cost-limit", "2", "--delta-down", "0.01",
    "--set", "rollout_length=50", "--set", "num_minibatches=4", "--set", "update_epochs=2",
    "--set", f"log_every_steps={UPDATE_STEPS}", "--set", "checkpoint_every=2",
    "--set", "eval_every=3", "--set", "eval_envs=8", "--set", "lagrange_init=0.5",
]
FULL = ["--total-steps", str(FULL_UPDATES * UPDATE_STEPS)]
REQUIRED_KEYS = {"env_steps", "seed", "episode_return", "episode_cost", "cumulative_cost",
                 "lagrange_multiplier", "sps"}


def read_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def final_state(run: Path):
    """(step, TrainState) of the newest checkpoint of `run`, restored on this process's devices."""
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    runner = Runner(config, envs.make(config.env), run, resume=True, log=lambda *a: None)
    step, state = runner.initial_state()
    runner.checkpointer.close()
    return step, state


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "sps"}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted CLI run of FULL_UPDATES updates (with the plot)."""
    out = tmp_path_factory.mktemp("full")
    assert main(ARGS + FULL + ["--out", str(out)]) == 0
    return out


# ----- output files ---------------------------------------------------------------------


def test_run_writes_metrics_config_plot_and_checkpoints(full_run, capsys):
    rows = read_rows(full_run)
    # One JSON object per log point and seed, in order.
    assert [(r["env_steps"], r["seed"]) for r in rows] == [
        (UPDATE_STEPS * u, s) for u in range(1, FULL_UPDATES + 1) for s in (0, 1)
    ]
    for row in rows:
        assert REQUIRED_KEYS <= set(row), sorted(REQUIRED_KEYS - set(row))
        assert row["sps"] > 0 and row["cumulative_cost"] >= 0
        assert row["lagrange_multiplier"] >= 0 and row["update"] == row["env_steps"] // 800
        assert row["shapo_kl"] > 0  # the SHAPO run's own diagnostics are logged
    # Evaluation every 3 log points and at the end.
    evaluated = sorted({r["env_steps"] // UPDATE_STEPS for r in rows if "eval_return" in r})
    assert evaluated == [3, 6, 8]
    # The two seeds are different runs; cumulative cost never decreases.
    assert rows[-2]["episode_return"] != rows[-1]["episode_return"]  # the last log point
    for seed in (0, 1):
        cumulative = [r["cumulative_cost"] for r in rows if r["seed"] == seed]
        assert np.all(np.diff(cumulative) >= 0)

    # config.json round-trips to the configuration the flags describe.
    saved = json.loads((full_run / "config.json").read_text())
    expected = config_from_args(build_parser().parse_args(ARGS + FULL))
    assert TrainConfig.from_dict(saved) == expected
    assert (expected.num_seeds, expected.delta_down, expected.rollout_length) == (2, 0.01, 50)

    png = (full_run / "training.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # Checkpoints: the newest two (every 2 log points and the last), complete.
    assert sorted(p.name for p in (full_run / "checkpoints").iterdir()) == ["6", "8"]
    step, state = final_state(full_run)
    assert step == FULL_UPDATES
    np.testing.assert_array_equal(np.asarray(state.update_step), [FULL_UPDATES] * 2)
    # Everything was written atomically: no temporary file or directory is left behind.
    leftovers = [p for p in full_run.rglob("*")
                 if p.name.startswith(".") or "tmp" in p.name.lower()]
    assert not leftovers, leftovers


# ----- resume is the uninterrupted run ----------------------------------------------------


def test_interrupted_and_extended_resume_equals_uninterrupted_run(full_run, tmp_path,
                                                                  monkeypatch):
    run = tmp_path / "run"
    # 1. A run of half the length, killed after update 3 was logged (its checkpoint: 2).
    crash_after_update(monkeypatch, 3)
    half = ["--total-steps", str(FULL_UPDATES // 2 * UPDATE_STEPS)]
    with pytest.raises(SimulatedCrashError):
        main(ARGS + half + ["--out", str(run), "--no-plot"])
    monkeypatch.undo()
    assert max(r["env_steps"] for r in read_rows(run)) == 3 * UPDATE_STEPS
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2"]

    # 2. Resume and extend to the full length: back to update 2, the row of update 3 is
    # dropped and redone, and the run goes on to the new total.
    assert main(["--resume", str(run), "--no-plot"] + FULL) == 0
    # The extension is recorded: config.json describes the run as it now stands.
    saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert saved == TrainConfig.from_dict(json.loads((full_run / "config.json").read_text()))

    full_step, full = final_state(full_run)
    step, resumed = final_state(run)
    assert step == full_step == FULL_UPDATES
    full_leaves = jax.tree_util.tree_leaves_with_path(full)
    for (path, a), b in zip(full_leaves, jax.tree_util.tree_leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg=jax.tree_util.keystr(path))

    full_rows, rows = read_rows(full_run), read_rows(run)
    assert [(r["env_steps"], r["seed"]) for r in rows] == [
        (r["env_steps"], r["seed"]) for r in full_rows
    ]
    for a, b in zip(full_rows, rows, strict=True):
        assert without_timing(a) == without_timing(b)


# ----- 1 device and 4 devices -------------------------------------------------------------

FOUR_DEVICE_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import jax
    from shapo_jax.training.cli import main

    args, out = json.loads(sys.argv[1]), sys.argv[2]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args + ["--num-envs", "6", "--out", out + "-bad", "--no-plot"])
            code = 0
        except SystemExit as exit:
            code = exit.code
    print("BAD" + json.dumps({"code": code, "stderr": err.getvalue()}))
    main(args + ["--out", out, "--no-plot"])
    print("DEVICES" + json.dumps(len(jax.devices())))
    """
)


def test_one_and_four_devices_agree(full_run, tmp_path):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp_path / "four"
    # --cpu-devices 4 splits the CPU before JAX starts (XLA_FLAGS set by the CLI itself).
    proc = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_SCRIPT, json.dumps(ARGS + FULL + ["--cpu-devices", "4"]),
         str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {ln[:3]: ln for ln in proc.stdout.splitlines() if ln.startswith(("BAD", "DEV"))}
    assert json.loads(lines["DEV"][len("DEVICES"):]) == 4
    assert "on 4 cpu device(s)" in proc.stdout

    # 6 environments cannot be split over 4 devices: one clear message, before any work.
    bad = json.loads(lines["BAD"][len("BAD"):])
    assert bad["code"] == 2
    assert "num_envs=6 is not divisible by the 4 devices" in bad["stderr"], bad["stderr"]
    assert "Traceback" not in bad["stderr"]
    assert not (Path(str(out) + "-bad") / "metrics.jsonl").exists()

    # The same run on 4 devices: sums split over devices round differently and Adam divides
    # by small second moments, so the runs agree to rounding amplified by the optimiser, not
    # bit for bit: every parameter within two Adam steps (lr) of the 1-device one, where a
    # sharding error (gradients not averaged over devices) moves parameters by many steps.
    lr = TrainConfig.from_dict(json.loads((out / "config.json").read_text())).actor_lr
    _, one = final_state(full_run)
    _, four = final_state(out)
    for params in ("actor_params", "critic_params"):
        leaves = jax.tree_util.tree_leaves_with_path(getattr(one.learner, params))
        for (path, a), b in zip(leaves, jax.tree_util.tree_leaves(getattr(four.learner, params)),
                                strict=True):
            diff = float(np.abs(np.asarray(a) - np.asarray(b)).max())
            assert diff <= 2 * lr, (params, jax.tree_util.keystr(path), diff)
    one_lagrange, four_lagrange = (jax.tree_util.tree_leaves(s.lagrange) for s in (one, four))
    for a, b in zip(one_lagrange, four_lagrange, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(one.update_step), np.asarray(four.update_step))
    np.testing.assert_allclose(np.asarray(four.env_state.obs), np.asarray(one.env_state.obs),
                               rtol=1e-3, atol=1e-3)
    one_rows, four_rows = read_rows(full_run), read_rows(out)
    assert len(one_rows) == len(four_rows)
    for a, b in zip(one_rows, four_rows, strict=True):
        assert set(a) == set(b)
        for key in sorted(set(a) - {"sps"}):
            if a[key] is None or b[key] is None:
                assert a[key] == b[key], key
            elif key == "shapo_cg_residual":
                # What is left of a 10-step float32 CG solve is rounding noise itself.
                assert 0 <= b[key] < 0.1, b[key]
            else:
                np.testing.assert_allclose(b[key], a[key], rtol=2e-2, atol=2e-3, err_msg=key)


# ----- bad input: one clear message, before anything is compiled ------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts or any program is lowered or compiled."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started on bad input")

    monkeypatch.setattr(runner_module.Runner, "train", refuse)
    monkeypatch.setattr(program_module.TrainingProgram, "compiled_chunk", refuse)
    with refusing_compilation():
        yield


def run_cli_expecting_error(argv: list[str], capsys) -> str:
    return cli_error(main, argv, capsys, usage_ok=True)


TINY = ["--env", "TinyHazardNav", "--num-envs", "16", "--set", "rollout_length=50",
        "--set", "num_minibatches=4"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--env", "NoSuchEnv"], ["unknown environment 'NoSuchEnv'", "valid names:",
                                  "TinyHazardNav", "SafetyPointGoal1"]),
        (["--algo", "sac_lag"], ["invalid choice: 'sac_lag'", "ppo_lag", "shapo_trpo_lag"]),
        (["--set", "algo=sac_lag"], ["algo='sac_lag'", "valid: ppo_lag"]),
        (["--num-envs", "0"], ["num_envs=0", "positive integer"]),
        (["--num-envs", "-8"], ["num_envs=-8", "positive integer"]),
        (["--total-steps", "-100"], ["total_steps=-100", "positive integer"]),
        (["--seeds", "0"], ["num_seeds=0", "positive integer"]),
        (["--set", "rollout_length=0"], ["rollout_length=0", "positive integer"]),
        (["--set", "num_minibatches=0"], ["num_minibatches=0", "positive integer"]),
        (["--num-envs", "3", "--set", "rollout_length=5"],
         ["num_envs * rollout_length = 15", "not divisible by num_minibatches=4"]),
        (["--delta-down", "-0.01"], ["delta_down=-0.01", ">= 0"]),
        (["--rho-critic", "nan"], ["rho_critic=nan", "finite number >= 0"]),
        (["--set", "no_such_field=1"], ["unknown config field 'no_such_field'", "valid:"]),
        (["--cpu-devices", "0"], ["cpu devices must be a positive integer, got 0"]),
        (["--env-option", "bogus=1"], ["unknown override(s) ['bogus']", "'TinyHazardNav'",
                                       "valid: ['episode_length', 'hazard_radius'"]),
        (["--env-option", "hazard_radius=-1"], ["hazard_radius must be > 0, got -1"]),
        (["--env-option", "hazard_radius"], ["--env-option expects KEY=VALUE",
                                             "'hazard_radius'"]),
        (["--set", "env_options=3"], ["env_options=3", "must be a mapping"]),
    ],
    ids=["env", "algo", "set-algo", "zero-envs", "negative-envs", "negative-steps",
         "zero-seeds", "zero-rollout", "zero-minibatches", "minibatch-split", "delta-down",
         "rho-nan", "unknown-field", "zero-cpu-devices", "env-option-key", "env-option-value",
         "env-option-form", "env-options-type"],
)
def test_bad_input_fails_with_one_clear_message(argv, expected, tmp_path, capsys, no_training):
    err = run_cli_expecting_error(TINY + argv + ["--out", str(tmp_path / "run")], capsys)
    for text in expected:
        assert text in err, (text, err)
    assert not (tmp_path / "run").exists()


def test_env_options_reach_the_env_and_survive_config_json() -> None:
    """--env-option KEY=VALUE (and --set env_options={...}) end up in TrainConfig.env_options,
    in any order, through config.json, and in the environment `config.make_env()` builds."""
    rng = fresh_rng()
    hazard, goal = (float(x) for x in rng.uniform(0.1, 0.9, 2))
    args = build_parser().parse_args(
        TINY + ["--set", f'env_options={{"goal_radius": {goal}}}',
                "--env-option", f"hazard_radius={hazard}"])
    config = config_from_args(args)
    assert config.env_options == (("goal_radius", goal), ("hazard_radius", hazard))
    reordered = dataclasses.replace(config, env_options={"hazard_radius": hazard,
                                                         "goal_radius": goal})
    assert reordered == config and hash(reordered) == hash(config)
    saved = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert saved == config and saved.to_dict()["env_options"] == {"goal_radius": goal,
                                                                   "hazard_radius": hazard}
    env = saved.make_env()
    while not hasattr(env, "hazard_radius"):
        env = env.env
    assert (env.hazard_radius, env.goal_radius) == (hazard, goal)
    other = dataclasses.replace(config, env_options={"hazard_radius": hazard})
    assert other != config
    # No options, no key: sweeps' run ids (digests of to_dict) predate the field.
    assert "env_options" not in dataclasses.replace(config, env_options={}).to_dict()


def test_resume_without_run_or_checkpoint_fails_clearly(full_run, tmp_path, capsys,
                                                        no_training):
    err = run_cli_expecting_error(["--resume", str(tmp_path / "missing")], capsys)
    assert "no config.json" in err and "missing" in err
    # A run directory whose checkpoints are gone.
    run = tmp_path / "no-checkpoint"
    run.mkdir()
    shutil.copy(full_run / "config.json", run / "config.json")
    err = run_cli_expecting_error(["--resume", str(run)], capsys)
    assert "no checkpoint under" in err and str(run) in err


# orbax's reader threads may report the failed read once more, to a closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["truncate", "garble", "metadata"])
def test_resume_from_corrupt_checkpoint_fails_clearly(damage, full_run, tmp_path, capsys,
                                                      no_training):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    newest = run / "checkpoints" / str(FULL_UPDATES)
    files = sorted(p for p in newest.rglob("*") if p.is_file())
    data = [p for p in files if p.parent.name == "d"]
    assert data, files
    rng = fresh_rng()
    for path in data if damage != "metadata" else []:
        size = path.stat().st_size
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[: size // 2])
        else:
            path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    if damage == "metadata":
        (newest / "default" / "_METADATA").write_text("{not json")
    rows_before = (run / "metrics.jsonl").read_text()
    err = run_cli_expecting_error(["--resume", str(run)], capsys)
    assert f"checkpoint {FULL_UPDATES} under {run / 'checkpoints'} cannot be read" in err, err
    assert "corrupt" in err
    # Nothing in the run directory was touched.
    assert (run / "metrics.jsonl").read_text() == rows_before


def test_navigation_task_trains_checkpoints_and_restores_its_mjx_state(tmp_path):
    """`make demo`'s path on a real MJX task, whose state carries zero-size arrays that orbax
    cannot store: train and checkpoint; the restored state has every leaf of the state the
    program starts from (shape, dtype, sharding; the zero-size ones rebuilt), so a resumed run
    is handed its compiled program's own input. Resuming and extending a run is tested on
    TinyHazardNav above: a second compilation of this task's program would double this test."""
    out = tmp_path / "nav"
    common = ["--env", "SafetyPointGoal1", "--num-envs", "4", "--set", "rollout_length=4",
              "--set", "log_every_steps=16", "--set", "num_minibatches=2", "--set", "eval_envs=2",
              "--set", "checkpoint_every=1", "--no-plot"]
    assert main(common + ["--total-steps", "16", "--out", str(out)]) == 0
    assert [r["env_steps"] for r in read_rows(out)] == [16]
    step, restored = final_state(out)
    assert step == 1 and int(restored.update_step[0]) == 1

    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    fresh_runner = Runner(config, envs.make(config.env), tmp_path / "fresh",
                          log=lambda *a: None)
    fresh = fresh_runner.program.init(fresh_runner.seeds, fresh_runner.hp)
    fresh_runner.checkpointer.close()
    fresh_leaves = jax.tree_util.tree_leaves_with_path(fresh)
    restored_leaves = jax.tree_util.tree_leaves(restored)
    assert len(fresh_leaves) == len(restored_leaves)
    assert any(math.prod(leaf.shape) == 0 for _, leaf in fresh_leaves)  # what orbax skips
    for (path, want), got in zip(fresh_leaves, restored_leaves, strict=True):
        where = jax.tree_util.keystr(path)
        spec = (want.shape, want.dtype, want.sharding)
        assert (got.shape, got.dtype, got.sharding) == spec, where
        if np.issubdtype(got.dtype, np.floating):
            assert np.isfinite(np.asarray(got)).all(), where
    # One update moved the policy away from its initialisation.
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(fresh.learner), jax.tree_util.tree_leaves(restored.learner),
        strict=True))
