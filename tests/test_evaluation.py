"""A trained run outside the trainer: shapo-eval against a hand-run NumPy loop, shapo-export
against the JAX policy, the NumPy loader without JAX, the task's action box, and bad input."""

from __future__ import annotations

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
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import cli_error, fresh_rng, fresh_seed, refusing_compilation

import envs
from shapo_jax.policy import load_policy
from shapo_jax.rollout import normalize, update_statistics
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.training.checkpoint import Checkpointer
from shapo_jax.training.devices import make_mesh
from shapo_jax.training.eval_cli import eval_main, export_main
from shapo_jax.training.evaluation import (
    RestoredMember,
    RunSelection,
    policy_fields,
    report_path,
    write_policy,
)
from shapo_jax.training.program import TrainingProgram, member_hyperparameters, member_key

ROOT = Path(__file__).resolve().parents[1]

# 2 seeds x 16 envs x 50 policy steps x action repeat 2: 1,600 env steps per update, 4 updates,
# checkpoints after updates 2 and 4. The hazard disc covers the start, so episodes cost.
HAZARD_RADIUS = 1.4
TRAIN_ARGS = [
    "--env", "TinyHazardNav", "--algo", "ppo_lag", "--num-envs", "16", "--seeds", "2",
    "--total-steps", "6400", "--cpu-devices", "2", "--env-option",
    f"hazard_radius={HAZARD_RADIUS}", "--set", "rollout_length=50", "--set", "action_repeat=2",
    "--set", "num_minibatches=4", "--set", "update_epochs=4", "--set", "log_every_steps=1600",
    "--set", "checkpoint_every=2", "--set", "eval_envs=8", "--set", "actor_lr=0.003",
    "--no-plot",
]
REPORT_KEYS = {"episode_return_mean", "episode_return_se", "episode_cost_mean",
               "episode_cost_se", "episodes", "checkpoint_step", "member", "seed", "env",
               "deterministic", "diverged", "episode_returns", "episode_costs"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A shapo-train run trained on two CPU devices in its own process (restored here on one)."""
    out = tmp_path_factory.mktemp("evaluation") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "shapo_jax.training.cli", *TRAIN_ARGS, "--out", str(out)],
        cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 cpu device(s)" in proc.stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2", "4"]
    return out


def restored_state(run: Path, step: int | None = None):
    """(config, the run's TrainState with its member axis), restored without evaluation.py."""
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    program = TrainingProgram(config, make_mesh(jax.devices()[:1]))
    target = program.abstract_state(
        config.num_seeds, member_hyperparameters([config.traced_values()] * config.num_seeds))
    checkpointer = Checkpointer(run / "checkpoints")
    try:
        _, state = checkpointer.restore(target, step)
    finally:
        checkpointer.close()
    return config, state


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ----- export: the NumPy policy is the JAX policy -----------------------------------------


def test_exported_policy_acts_as_the_trained_jax_policy(run_dir, tmp_path, capsys):
    out = tmp_path / "policy.npz"
    assert export_main([str(run_dir), "--member", "1", "--out", str(out)]) == 0
    assert "member 1 (seed 1), checkpoint 4" in capsys.readouterr().out
    policy = load_policy(out)
    config, state = restored_state(run_dir)
    member = jax.tree_util.tree_map(lambda x: x[1], state)

    # A trained state: the parameters moved away from the seed's initial ones, and the
    # observation statistics were seen.
    trainer = make_train(config, config.make_env())
    initial = trainer.init(member_key(1)).learner.actor_params
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(initial), jax.tree_util.tree_leaves(member.learner.actor_params),
        strict=True)]
    assert min(moved) > 1e-3, moved
    assert float(member.obs_stats.count) == 4 * 16 * 50

    # Fresh observations, some far enough out for the normalisation's clip at 10 std.
    rng = fresh_rng()
    obs = (np.asarray(member.obs_stats.mean)
           + rng.normal(size=(256, 6)) * rng.choice([0.5, 3.0, 30.0], size=(256, 1))
           ).astype(np.float32)
    normalized = np.asarray(normalize(member.obs_stats, jnp.asarray(obs)))
    assert np.any(np.abs(normalized) == 10.0)
    mean, _ = trainer.policy(member, deterministic=True)(jnp.asarray(obs), jax.random.PRNGKey(0))
    mean = np.asarray(mean)
    np.testing.assert_allclose(policy.mean_action(obs), mean, rtol=1e-4, atol=1e-6)
    # The task clips to [-1, 1]: the exported action is the one it applies.
    np.testing.assert_allclose(policy(obs), np.clip(mean, -1.0, 1.0), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(policy.act(obs[0]), policy(obs[:1])[0])  # one obs or a batch

    # The other member is another policy: --member picks the seed.
    other, _ = trainer.policy(jax.tree_util.tree_map(lambda x: x[0], state), deterministic=True)(
        jnp.asarray(obs), jax.random.PRNGKey(0))
    assert np.abs(np.asarray(other) - mean).max() > 1e-3

    # The metadata a user (and scripts/crosscheck.py) needs.
    assert (policy.env, policy.env_options) == ("TinyHazardNav",
                                                {"hazard_radius": HAZARD_RADIUS})
    assert (policy.action_repeat, policy.episode_length, policy.obs_size) == (2, 50, 6)
    assert policy.obs_layout == [("position", 2), ("goal_offset", 2), ("hazard_offset", 2)]
    assert (policy.seed, policy.member, policy.checkpoint_step) == (1, 1, 4)
    assert (policy.activation, policy.num_layers, policy.format_version) == ("tanh", 3, 1)
    assert policy.normalize_observations and policy.obs_clip == 10.0
    stats = member.obs_stats
    std = np.sqrt(np.asarray(stats.sum_squared_deviations, np.float64) / float(stats.count)
                  + 1e-8)
    np.testing.assert_allclose(policy.obs_std, std, rtol=1e-5)
    np.testing.assert_array_equal(policy.action_low, [-1, -1])
    np.testing.assert_array_equal(policy.action_high, [1, 1])
    np.testing.assert_array_equal(policy.log_std,
                                  np.asarray(member.learner.actor_params["params"]["log_std"]))
    with np.load(out) as data:  # every field plain: readable without pickles
        assert {"kernel_0", "bias_2", "obs_layout", "env_options"} <= set(data.files)
    assert not [p for p in tmp_path.iterdir() if p.name != "policy.npz"]  # no temporary left


@pytest.mark.parametrize(("activation", "normalize_obs"),
                         [("relu", True), ("elu", False), ("silu", True)])
def test_every_activation_and_no_normalisation_export_exactly(activation, normalize_obs,
                                                               tmp_path):
    """The loader's NumPy activations and the unnormalised case, on a perturbed state."""
    config = TrainConfig(env="TinyHazardNav", num_envs=4, rollout_length=4, num_minibatches=1,
                         activation=activation, normalize_observations=normalize_obs,
                         hidden_sizes=(16, 8))
    env = config.make_env()
    trainer = make_train(config, env)
    seed = fresh_seed()
    init_key, perturb_key, stats_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    state = trainer.init(init_key)
    leaves, treedef = jax.tree_util.tree_flatten(state.learner.actor_params)
    keys = jax.random.split(perturb_key, len(leaves))
    params = jax.tree_util.tree_unflatten(treedef, [
        x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)])
    stats = update_statistics(state.obs_stats, 3.0 * jax.random.normal(stats_key, (64, 6)))
    state = state.replace(learner=state.learner.replace(actor_params=params), obs_stats=stats)
    selection = RunSelection(directory=tmp_path, config=config, step=7, steps=(7,), member=0,
                             seed=0)
    restored = RestoredMember(selection=selection, env=env, trainer=trainer,
                              state=jax.device_get(state), lapack_limit=None)
    policy = load_policy(write_policy(tmp_path / "p.npz", policy_fields(restored)))
    assert policy.activation == activation and policy.num_layers == 3
    assert policy.normalize_observations == normalize_obs
    obs = np.random.default_rng(seed).normal(size=(128, 6)).astype(np.float32) * 4
    mean, _ = trainer.policy(state, deterministic=True)(jnp.asarray(obs), jax.random.PRNGKey(0))
    mean = np.asarray(mean)
    # Float32 sums in another order: the error scales with the largest terms (means of -100).
    scale = max(1.0, float(np.abs(mean).max()))
    np.testing.assert_allclose(policy.mean_action(obs), mean, rtol=1e-4, atol=1e-6 * scale)
    assert np.mean(np.abs(mean) > 1.0) > 0.2  # perturbed weights: many means leave the box
    np.testing.assert_allclose(policy(obs), np.clip(mean, -1.0, 1.0), rtol=1e-4,
                               atol=1e-6 * scale)
    assert np.abs(policy(obs)).max() == 1.0


LOADER_WITHOUT_JAX = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy as np
    for name in ("jax", "jaxlib", "flax", "optax", "brax", "mujoco", "shapo_jax", "envs"):
        sys.modules[name] = None  # importing any of them now fails
    spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    policy = module.load_policy(sys.argv[2])
    obs = np.asarray(json.loads(sys.argv[3]), np.float32)
    print(json.dumps({"actions": policy(obs).tolist(), "layout": policy.obs_layout,
                      "repeat": policy.action_repeat, "options": policy.env_options}))
    """
)


def test_the_loader_runs_by_path_without_jax(run_dir, tmp_path):
    out = tmp_path / "policy.npz"
    assert export_main([str(run_dir), "--out", str(out)]) == 0
    obs = fresh_rng().normal(size=(5, 6)).astype(np.float32)
    loader = ROOT / "shapo_jax" / "policy" / "exported.py"
    proc = subprocess.run([sys.executable, "-I", "-c", LOADER_WITHOUT_JAX, str(loader),
                           str(out), json.dumps(obs.tolist())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    np.testing.assert_array_equal(np.asarray(result["actions"], np.float32),
                                  load_policy(out)(obs))
    assert result["layout"] == [["position", 2], ["goal_offset", 2], ["hazard_offset", 2]]
    assert (result["repeat"], result["options"]) == (2, {"hazard_radius": HAZARD_RADIUS})


# ----- shapo-eval: the episodes a hand-run NumPy loop gives -------------------------------


def numpy_loop_episodes(policy, episodes: int, seed: int, stochastic: bool):
    """Per-episode (returns, costs) of the exported policy on our port, stepped one env and
    one step at a time from shapo-eval's documented keys (evaluation.py's docstring)."""
    env = envs.make("TinyHazardNav", hazard_radius=HAZARD_RADIUS)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    horizon = math.ceil(50 / 2)
    reset_key, action_key = jax.random.split(jax.random.PRNGKey(seed))
    step_keys = jax.random.split(action_key, horizon)
    noise = np.stack([np.asarray(jax.random.normal(k, (episodes, 2))) for k in step_keys])
    returns, costs = np.zeros(episodes), np.zeros(episodes)
    for i, key in enumerate(jax.random.split(reset_key, episodes)):
        state = reset(key)
        for t in range(horizon):
            obs = np.asarray(state.obs)
            action = policy.mean_action(obs)  # the env clips what it is given
            if stochastic:
                action = action + np.exp(policy.log_std) * noise[t, i]
            for _ in range(policy.action_repeat):
                state = step(state, jnp.asarray(action))
                returns[i] += float(state.reward)
                costs[i] += float(state.info["cost"])
                if float(state.done):
                    break
            if float(state.done):
                break
        assert float(state.done) == 1.0 and int(state.info["steps"]) == 50  # a full episode
    return returns, costs


@pytest.mark.parametrize("stochastic", [False, True], ids=["deterministic", "stochastic"])
def test_shapo_eval_reports_the_episodes_of_a_numpy_loop(run_dir, tmp_path, capsys,
                                                         stochastic):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    episodes, seed = 6, fresh_seed()
    argv = [str(run), "--member", "1", "--episodes", str(episodes), "--seed", str(seed),
            "--json"] + (["--stochastic"] if stochastic else [])
    assert eval_main(argv) == 0
    printed = capsys.readouterr().out
    report = last_json_line(printed)  # the --json contract: the last line is the report
    assert REPORT_KEYS <= set(report), sorted(REPORT_KEYS - set(report))
    policy = "stochastic" if stochastic else "deterministic"
    written = run / "eval" / f"member1-checkpoint4-{policy}-seed{seed}-episodes{episodes}.json"
    assert report_path(run, report) == written and json.loads(written.read_text()) == report
    assert (report["member"], report["run_seed"], report["checkpoint_step"]) == (1, 1, 4)
    assert (report["seed"], report["episodes"], report["env"]) == (seed, episodes,
                                                                 "TinyHazardNav")
    assert report["deterministic"] is not stochastic and report["diverged"] is False

    policy = load_policy_of(run, tmp_path, member=1)
    returns, costs = numpy_loop_episodes(policy, episodes, seed, stochastic)
    assert costs.sum() > 0 and len(set(returns.round(4))) > 1  # episodes that differ and cost
    np.testing.assert_allclose(report["episode_returns"], returns, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(report["episode_costs"], costs, atol=1e-6)
    for name, values in (("episode_return", returns), ("episode_cost", costs)):
        assert report[f"{name}_mean"] == pytest.approx(values.mean(), rel=1e-4, abs=1e-4)
        se = values.std(ddof=1) / math.sqrt(episodes)
        assert report[f"{name}_se"] == pytest.approx(se, rel=1e-3, abs=1e-4)
    mean, se = report["episode_return_mean"], report["episode_return_se"]
    assert f"episode return {mean:.3f} +- {se:.3f}" in printed


def test_the_trainers_periodic_evaluation_is_the_numpy_loops_mean(run_dir, tmp_path):
    """`Trainer.evaluate` (the eval_return and eval_cost of metrics.jsonl) on a restored
    member: the mean of the NumPy loop's deterministic episodes from the same reset keys."""
    config, state = restored_state(run_dir)
    member, episodes = 1, 5
    seed = fresh_seed()
    trainer = make_train(config, config.make_env())  # the run's env options
    member_state = jax.tree_util.tree_map(lambda x: x[member], state)
    reset_key, _ = jax.random.split(jax.random.PRNGKey(seed))  # the loop's reset key
    result = jax.jit(trainer.evaluate, static_argnums=2)(member_state, reset_key, episodes)
    returns, costs = numpy_loop_episodes(load_policy_of(run_dir, tmp_path, member), episodes,
                                         seed, stochastic=False)
    assert costs.sum() > 0 and len(set(returns.round(4))) > 1
    assert float(result.episode_return) == pytest.approx(returns.mean(), rel=1e-4, abs=1e-4)
    assert float(result.episode_cost) == pytest.approx(costs.mean(), abs=1e-5)


def load_policy_of(run: Path, tmp_path: Path, member: int):
    out = tmp_path / f"member{member}.npz"
    assert export_main([str(run), "--member", str(member), "--out", str(out)]) == 0
    return load_policy(out)


def test_shapo_eval_renders_the_first_episode(run_dir, tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    video = tmp_path / "episode.gif"
    assert eval_main([str(run), "--episodes", "2", "--checkpoint", "2", "--video",
                      str(video)]) == 0
    assert "wrote" in capsys.readouterr().out
    # The initial state, then one frame per policy step: 50 env steps at action repeat 2.
    assert Image.open(video).n_frames == 1 + 25
    written = run / "eval" / "member0-checkpoint2-deterministic-seed0-episodes2.json"
    assert json.loads(written.read_text())["checkpoint_step"] == 2


def test_each_evaluation_is_kept_and_the_seed_defaults_to_the_members_index(run_dir, tmp_path,
                                                                             capsys):
    """Evaluating another member or seed adds a report and overwrites none; without --seed
    member K is evaluated on seed K's layouts (the same figures as --seed K), K the member's
    index and not its training seed."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = json.loads((run / "config.json").read_text())
    config["seed"] = 5  # training seeds 5 and 6: only the index says 0 and 1
    (run / "config.json").write_text(json.dumps(config))
    other = 2 + int(fresh_rng().integers(1000))
    reports = {}
    for member, seed in ((0, None), (1, None), (1, 1), (1, other)):
        argv = [str(run), "--member", str(member), "--episodes", "4", "--json"]
        assert eval_main(argv + ([] if seed is None else ["--seed", str(seed)])) == 0
        reports[member, seed] = last_json_line(capsys.readouterr().out)
    assert [reports[0, None]["seed"], reports[1, None]["seed"]] == [0, 1]
    assert [reports[0, None]["run_seed"], reports[1, None]["run_seed"]] == [5, 6]
    assert reports[1, None] == reports[1, 1]  # the default is --seed 1, and the same file
    assert reports[1, other]["episode_returns"] != reports[1, 1]["episode_returns"]
    written = sorted(p.name for p in (run / "eval").iterdir())
    assert written == sorted(report_path(run, reports[key]).name
                             for key in ((0, None), (1, None), (1, other)))
    for report in (reports[0, None], reports[1, 1], reports[1, other]):
        assert json.loads(report_path(run, report).read_text()) == report


# ----- a diverged member is reported, never evaluated or exported -------------------------


def test_a_diverged_member_reports_that_and_no_figures(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    _, state = restored_state(run)
    state = state.replace(diverged=jnp.asarray([False, True]))
    checkpointer = Checkpointer(run / "checkpoints")
    checkpointer.save(6, state)
    checkpointer.close()

    with refusing_compilation():  # nothing is evaluated
        assert eval_main([str(run), "--member", "1", "--json"]) == 1
    captured = capsys.readouterr()
    report = last_json_line(captured.out)
    assert report["diverged"] is True and report["checkpoint_step"] == 6
    for key in ("episode_return_mean", "episode_return_se", "episode_cost_mean",
                "episode_cost_se", "episode_returns", "episode_costs"):
        assert report[key] is None, key
    assert "DIVERGED" in captured.out and "member 1 diverged" in captured.err
    assert json.loads(report_path(run, report).read_text()) == report

    out = tmp_path / "policy.npz"
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(run), "--member", "1", "--out", str(out)])
    assert exit_info.value.code == 1
    assert "diverged" in capsys.readouterr().err and not out.exists()


# ----- bad input: one clear message, exit status 2, before anything is compiled ---------


@pytest.fixture
def no_compilation():
    with refusing_compilation():
        yield


def broken_runs(run_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Directories that are not usable runs."""
    no_checkpoints = tmp_path / "no_checkpoints"
    no_checkpoints.mkdir()
    shutil.copy(run_dir / "config.json", no_checkpoints / "config.json")
    empty = tmp_path / "empty_checkpoints"
    shutil.copytree(no_checkpoints, empty)
    (empty / "checkpoints").mkdir()
    bad_config = tmp_path / "bad_config"
    shutil.copytree(run_dir, bad_config)
    (bad_config / "config.json").write_text('{"algo": "sac_lag"}')
    (tmp_path / "no_config").mkdir()
    return {"no_checkpoints": no_checkpoints, "empty": empty, "bad_config": bad_config,
            "no_config": tmp_path / "no_config", "missing": tmp_path / "missing"}


CASES = [
    ("run", ["--member", "2"], ["--member 2", "2 member(s)", "seeds 0, 1", "valid: 0..1"]),
    ("run", ["--member", "-1"], ["--member -1", "valid: 0..1"]),
    ("run", ["--checkpoint", "3"], ["--checkpoint 3", "no such checkpoint", "valid steps: 2, 4"]),
    ("missing", [], ["missing: no such run directory"]),
    ("no_config", [], ["no config.json"]),
    ("bad_config", [], ["config.json cannot be read", "algo='sac_lag'"]),
    ("no_checkpoints", [], ["no checkpoint under", "checkpoints"]),
    ("empty", [], ["no checkpoint under"]),
]
IDS = ["member", "negative-member", "step", "missing-dir", "no-config", "bad-config",
       "no-checkpoints", "empty-checkpoints"]


def expect_error(main, argv: list[str], capsys) -> str:
    return cli_error(main, argv, capsys)


@pytest.mark.parametrize(("run", "argv", "expected"), CASES, ids=IDS)
def test_bad_input_fails_with_one_clear_message(run, argv, expected, run_dir, tmp_path, capsys,
                                                no_compilation):
    directory = run_dir if run == "run" else broken_runs(run_dir, tmp_path)[run]
    before = sorted(p.name for p in directory.rglob("*")) if directory.exists() else None
    for main, extra in ((eval_main, ["--json"]), (export_main, ["--out",
                                                                str(tmp_path / "p.npz")])):
        err = expect_error(main, [str(directory), *argv, *extra], capsys)
        for text in expected:
            assert text in err, (text, err)
    assert not (tmp_path / "p.npz").exists()
    if before is not None:  # nothing written (no eval report), nothing created
        assert sorted(p.name for p in directory.rglob("*")) == before


@pytest.mark.parametrize(("argv", "expected"), [
    (["--episodes", "0"], ["--episodes must be a positive integer, got 0"]),
    (["--video", "episode.avi"], ["unsupported format '.avi'", ".gif, .mp4, .png"]),
], ids=["episodes", "video-format"])
def test_bad_eval_options_fail_before_compiling(argv, expected, run_dir, tmp_path, capsys,
                                                no_compilation):
    err = expect_error(eval_main, [str(run_dir), *argv], capsys)
    for text in expected:
        assert text in err, (text, err)


# ----- the box of actions a task applies ---------------------------------------------------


@pytest.mark.parametrize("name", ["TinyHazardNav", "SafetyPointGoal1"])
def test_an_action_outside_the_box_acts_as_its_clip(name):
    env = envs.make(name)
    low, high = envs.action_bounds(env)
    assert low.shape == high.shape == (env.action_size,) and np.all(low < high)
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    outside = rng.uniform(1.5, 4.0, env.action_size) * rng.choice([-1.0, 1.0], env.action_size)
    # (A tenth of the clip, not 0.9 of it: the Point's actuators saturate their force limits
    # well inside the box, so 0.9 and 1 can push alike.)
    clipped = np.clip(outside, low, high)
    actions = jnp.asarray(np.stack([outside, clipped, 0.1 * clipped]), jnp.float32)
    state = env.reset(jax.random.PRNGKey(seed))
    steps = jax.jit(jax.vmap(env.step, in_axes=(None, 0)))(state, actions)
    for path, leaf in jax.tree_util.tree_leaves_with_path(steps):  # the whole next state
        leaf = np.asarray(leaf)
        np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=jax.tree_util.keystr(path))
    # and the box is no wider than it must be: an action inside it acts differently.
    assert np.abs(np.asarray(steps.obs[1]) - np.asarray(steps.obs[2])).max() > 0


def test_brax_robots_box_is_their_actuators_range_in_action_space():
    ant = envs.make("SafetyAntVelocity")
    np.testing.assert_array_equal(envs.action_bounds(ant)[1],
                                  np.asarray(ant.unwrapped.sys.actuator.ctrl_range)[:, 1])
    humanoid = envs.make("SafetyHumanoidVelocity")  # maps [-1, 1] onto ctrl_range
    ctrl = np.asarray(humanoid.unwrapped.sys.actuator.ctrl_range)
    assert np.all(ctrl[:, 1] < 1.0)
    low, high = envs.action_bounds(humanoid)
    np.testing.assert_allclose(low, -1.0, atol=1e-6)
    np.testing.assert_allclose(high, 1.0, atol=1e-6)

