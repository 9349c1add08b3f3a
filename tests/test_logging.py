"""Where the metrics go besides metrics.jsonl: TensorBoard event files per seed (read back with
TensorBoard's own reader, through an interruption and resume), Weights & Biases runs (a fake
`wandb` module records the calls), the same per sweep member; the progress line's episode
figures and the plots' step ticks."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from helpers import SimulatedCrashError, crash_after_update
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs
from shapo_jax.experiments import SweepSpec, member_run_name, read_table, run_sweep
from shapo_jax.experiments.cli import sweep_main
from shapo_jax.experiments.grid import expand_grid
from shapo_jax.experiments.table import METRIC_COLUMNS
from shapo_jax.metrics import WandbSettings, format_steps, metric_values
from shapo_jax.metrics.wandb_runs import version_tuple
from shapo_jax.training import TrainConfig
from shapo_jax.training import program as program_module
from shapo_jax.training.cli import main
from shapo_jax.training.runner import Runner, carry_episode_figures

# 2 seeds x 16 envs x 50 steps: 800 env steps per update, one update per log point.
UPDATE_STEPS = 800
ARGS = ["--env", "TinyHazardNav", "--algo", "ppo_lag", "--num-envs", "16", "--seeds", "2",
        "--cost-limit", "2", "--set", "rollout_length=50", "--set", "num_minibatches=4",
        "--set", "update_epochs=1", "--set", "hidden_sizes=[16]",
        "--set", f"log_every_steps={UPDATE_STEPS}", "--set", "checkpoint_every=2",
        "--set", "eval_every=2", "--set", "eval_envs=4", "--total-steps", str(4 * UPDATE_STEPS),
        "--no-plot"]
SEEDS = (0, 1)


def read_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def event_scalars(directory: Path, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of an event directory, as TensorBoard reads it (`purge`: drop
    the points a restart marker orphans, TensorBoard's default)."""
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0},
                                   purge_orphaned_data=purge)
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def expected_scalars(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] that the records of one run should give."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in metric_values(record).items():
            expected.setdefault(key, []).append((record["env_steps"], value))
    return expected


def assert_same_scalars(got: dict, want: dict, where: str) -> None:
    assert sorted(got) == sorted(want), (where, sorted(set(got) ^ set(want)))
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], (where, tag)
        # TensorBoard stores float32: equal to float32 rounding.
        np.testing.assert_allclose([v for _, v in got[tag]], [v for _, v in points],
                                   rtol=1e-6, atol=1e-30, err_msg=f"{where}: {tag}")


class FakeRun:
    """What `wandb.init` returns: records define_metric, log and finish."""

    def __init__(self, **init):
        self.init, self.metrics, self.logged, self.finished = init, [], [], False

    def define_metric(self, name, **options):
        self.metrics.append((name, options))

    def log(self, data):
        assert not self.finished, "logged to a finished run"
        self.logged.append(dict(data))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A `wandb` module in sys.modules whose `init` hands out FakeRuns (kept in `.runs`)."""
    module = types.ModuleType("wandb")
    module.__version__ = "0.21.0"
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


@pytest.fixture
def no_compilation(monkeypatch):
    """Fail the test if any training program is compiled."""
    def refuse(*args, **kwargs):
        raise AssertionError("compiled before rejecting the input")

    monkeypatch.setattr(program_module.TrainingProgram, "compiled_chunk", refuse)


# ----- shapo-train ------------------------------------------------------------------------


def test_tensorboard_per_seed_equals_metrics_through_a_resume(tmp_path, monkeypatch):
    """A run killed after update 3 (checkpoint: update 2), resumed to update 4: TensorBoard
    shows every metric of metrics.jsonl per seed, at the same steps, each step once."""
    run = tmp_path / "run"
    crash_after_update(monkeypatch, 3)
    with pytest.raises(SimulatedCrashError):
        main(ARGS + ["--out", str(run)])
    monkeypatch.undo()
    first = event_scalars(run / "tensorboard" / "seed_0")
    assert [s for s, _ in first["episode_cost_estimate"]] == [800, 1600, 2400]
    assert main(["--resume", str(run), "--no-plot"]) == 0

    rows = read_rows(run)
    assert [r["env_steps"] for r in rows] == [UPDATE_STEPS * u for u in (1, 2, 3, 4) for _ in SEEDS]
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["seed_0", "seed_1"]
    for seed in SEEDS:
        directory = run / "tensorboard" / f"seed_{seed}"
        want = expected_scalars([r for r in rows if r["seed"] == seed])
        assert {"episode_return", "lagrange_multiplier", "eval_return", "sps"} <= set(want)
        assert_same_scalars(event_scalars(directory), want, f"seed {seed}")
        # The interrupted process's point at update 3 is in the files, orphaned by the
        # resumed process's restart marker: without the purge it would show twice.
        raw = event_scalars(directory, purge=False)["episode_cost_estimate"]
        assert [s for s, _ in raw].count(3 * UPDATE_STEPS) == 2
    # The seeds are different runs.
    values = [event_scalars(run / "tensorboard" / f"seed_{s}")["policy_kl"] for s in SEEDS]
    assert values[0] != values[1]


def test_wandb_logs_metrics_per_seed_and_no_tensorboard(tmp_path, fake_wandb):
    run = tmp_path / "wb-run"
    assert main(ARGS + ["--out", str(run), "--wandb", "--wandb-project", "proj",
                        "--wandb-entity", "team", "--no-tensorboard"]) == 0
    assert not (run / "tensorboard").exists()
    rows = read_rows(run)
    config = json.loads((run / "config.json").read_text())
    assert [r.init["name"] for r in fake_wandb.runs] == ["seed_0", "seed_1"]
    for seed, wb in zip(SEEDS, fake_wandb.runs, strict=True):
        assert {k: wb.init[k] for k in ("project", "entity", "group", "reinit")} == {
            "project": "proj", "entity": "team", "group": "wb-run", "reinit": "create_new"}
        assert wb.init["config"]["seed"] == seed
        assert {k: v for k, v in wb.init["config"].items() if k in config and k != "seed"} == {
            k: v for k, v in config.items() if k != "seed"}
        assert ("*", {"step_metric": "env_steps"}) in wb.metrics
        assert wb.finished
        want = [{"env_steps": r["env_steps"], **metric_values(r)} for r in rows
                if r["seed"] == seed]
        assert wb.logged == want
        assert {"episode_return", "eval_cost", "update"} <= set().union(*wb.logged)


@pytest.mark.parametrize("flags, module, expected", [
    (["--wandb"], None, "pip install wandb"),
    (["--wandb"], "0.18.0", "wandb >= 0.19.10"),
    (["--wandb-project", "p"], "0.21.0", "--wandb-project given without --wandb"),
    (["--wandb", "--wandb-project", " "], "0.21.0", "--wandb-project must be a non-empty"),
])
def test_bad_wandb_options_fail_before_compiling(flags, module, expected, tmp_path, capsys,
                                                 monkeypatch, no_compilation):
    if module is None:
        monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    else:
        fake = types.ModuleType("wandb")
        fake.__version__ = module
        monkeypatch.setitem(sys.modules, "wandb", fake)
    for entry, argv in ((main, ARGS + ["--out", str(tmp_path / "run")]),
                        (sweep_main, ["--algos", "ppo_lag", "--envs", "TinyHazardNav", "--quiet",
                                      "--out", str(tmp_path / "sweep")])):
        with pytest.raises(SystemExit) as exit_info:
            entry(argv + flags)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_version_tuple():
    assert version_tuple("0.19.10") == (0, 19, 10) > (0, 19, 9)
    assert version_tuple("0.21.0rc1") == (0, 21, 0)
    assert version_tuple("1.2.dev3") == (1, 2)
    assert version_tuple("") == ()


# ----- shapo-sweep ------------------------------------------------------------------------

SWEEP = {"algos": ["ppo_lag"], "envs": ["TinyHazardNav"], "grid": {"actor_lr": [3e-4, 3e-3]},
         "seeds": [0, 1],
         "set": {"num_envs": 16, "rollout_length": 50, "total_steps": 2400,
                 "log_every_steps": 800, "hidden_sizes": [16], "update_epochs": 1,
                 "num_minibatches": 2, "eval_every": 2, "eval_envs": 4}}


def test_sweep_members_get_their_own_tensorboard_and_wandb_runs(tmp_path, fake_wandb):
    spec = SweepSpec.from_dict(SWEEP)
    out = tmp_path / "sweep"
    names = sorted(member_run_name(m, ("actor_lr",)) for m in expand_grid(spec))
    assert names == [f"ppo_lag-TinyHazardNav-actor_lr={lr}-seed_{s}"
                     for lr in ("0.0003", "0.003") for s in (0, 1)]

    def interrupt(group, done, rows):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the members are trained again from scratch
        run_sweep(spec, out, progress=None, on_chunk=interrupt)
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == names
    fake_wandb.runs.clear()
    result = run_sweep(spec, out, progress=None, wandb=WandbSettings(project="sweeps"))
    assert result.runs_trained == 4

    rows = read_table(out)
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == names
    by_name = {r.init["name"]: r for r in fake_wandb.runs}
    assert sorted(by_name) == names
    for member in expand_grid(spec):
        name = member_run_name(member, ("actor_lr",))
        member_rows = [r for r in rows if r["run_id"] == member.run_id]
        assert [r["env_steps"] for r in member_rows] == [800, 1600, 2400]
        scalars = event_scalars(out / "tensorboard" / name)
        # Each step once: the interrupted attempt's events were replaced, not purged.
        assert scalars == event_scalars(out / "tensorboard" / name, purge=False)
        logged = by_name[name].logged
        assert [p["env_steps"] for p in logged] == [800, 1600, 2400]
        assert by_name[name].init["group"] == "sweep" and by_name[name].finished
        assert by_name[name].init["config"]["run_id"] == member.run_id
        assert by_name[name].init["config"]["actor_lr"] == member.hp_dict["actor_lr"]
        for column in METRIC_COLUMNS:
            want = [(r["env_steps"], r[column]) for r in member_rows if np.isfinite(r[column])]
            got = scalars.get(column, [])
            assert [s for s, _ in got] == [s for s, _ in want], (name, column)
            np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6,
                                       atol=1e-30, err_msg=f"{name}: {column}")
            wb = [(p["env_steps"], p[column]) for p in logged if column in p]
            np.testing.assert_allclose([v for _, v in wb], [v for _, v in want], rtol=1e-12,
                                       err_msg=f"{name}: {column}")
    # The members of a group differ (vmapped runs stay apart).
    finals = {name: event_scalars(out / "tensorboard" / name)["policy_kl"][-1][1]
              for name in names}
    assert len(set(finals.values())) == 4


# ----- the progress line and the plots ----------------------------------------------------


def record(seed, episode_return=None, episode_cost=None, diverged=0.0):
    return {"env_steps": 800, "seed": seed, "episode_return": episode_return,
            "episode_cost": episode_cost, "reward_rate": 0.01, "lagrange_multiplier": 0.5,
            "episode_cost_estimate": 1.0, "diverged": diverged}


def test_carry_episode_figures():
    known = carry_episode_figures({}, [record(0), record(1)])
    assert known == {0: {}, 1: {}}
    known = carry_episode_figures(known, [record(0, 2.0, 1.0), record(1)])
    assert known == {0: {"episode_return": 2.0, "episode_cost": 1.0}, 1: {}}
    # The window holds no episode at this log point: the last figures stay.
    again = carry_episode_figures(known, [record(0), record(1, 4.0, float("nan"))])
    assert again == {0: {"episode_return": 2.0, "episode_cost": 1.0}, 1: {"episode_return": 4.0}}
    assert known[1] == {}  # pure: the figures passed in are not changed
    assert carry_episode_figures(again, [record(0, diverged=1.0), record(1)]) == {
        1: {"episode_return": 4.0}}


def test_progress_line_shows_episodes_as_soon_as_they_complete(tmp_path):
    config = TrainConfig(env="TinyHazardNav", num_envs=16, rollout_length=50, num_seeds=2,
                         num_minibatches=4, total_steps=8000, log_every_steps=800)
    lines: list[str] = []
    runner = Runner(config, envs.make("TinyHazardNav"), tmp_path, log=lines.append)
    runner.checkpointer.close()
    for done, records in enumerate([
        [record(0), record(1)],  # no full episode yet
        [record(0, 1.0, 3.0), record(1)],  # seed 0's first ones
        [record(0), record(1)],  # none in the window at this log point
        [record(0, 3.0, 1.0), record(1, 2.0, 0.0)],
        [record(0, diverged=1.0), record(1)],
    ], start=1):
        runner._progress(done, done * 800, records, 1000.0, float(done))
    returns = [line.split("| return")[1].split("(rate")[0].strip() for line in lines]
    costs = [line.split("| cost")[1].split("(est")[0].strip() for line in lines]
    assert returns == ["-", "1.00", "1.00", "2.50", "2.00"]
    assert costs == ["-", "3.00", "3.00", "0.50", "0.00"]
    assert "DIVERGED seed(s) [0]" in lines[-1]


@pytest.mark.parametrize("value, text", [
    (0, "0"), (1, "1"), (950, "950"), (1_000, "1k"), (1_500, "1.5k"), (12_345, "12.3k"),
    (200_000, "200k"), (999_999, "1M"), (1_000_000, "1M"), (1_500_000, "1.5M"),
    (2_250_000, "2.25M"), (123_456_789, "123M"), (1e9, "1B"), (-500_000, "-500k"),
    (0.5, "0.5"),
])
def test_step_ticks(value, text):
    assert format_steps(value) == text
    assert format_steps(value, 3) == text  # matplotlib's FuncFormatter passes a position


def test_plots_use_step_ticks(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from shapo_jax.metrics.plots import step_axis

    fig, ax = plt.subplots()
    ax.plot([0, 2_000_000], [0, 1])
    step_axis(ax)
    fig.canvas.draw()
    formatter = ax.xaxis.get_major_formatter()
    assert isinstance(formatter, FuncFormatter)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "1M" in labels and "2M" in labels, labels
    plt.close(fig)
