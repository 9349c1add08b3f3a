"""Sweeps: grid expansion, grouping into programs, vmapped = separate runs, interruption and
resumption, the tidy table, Pareto fronts and confidence bands, the CLI and the plots."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from helpers import fresh_rng

from shapo_jax.experiments import (
    COLUMNS,
    SweepSpec,
    assign_groups,
    confidence_band,
    expand_grid,
    group_members,
    pareto_front,
    plot_sweep,
    read_table,
    run_sweep,
    student_t_quantile,
)
from shapo_jax.experiments.cli import plot_main, sweep_main
from shapo_jax.experiments.grid import HP_FIELDS
from shapo_jax.experiments.stats import (
    against_baselines,
    baseline_setting,
    difference_band,
    final_metrics,
)
from shapo_jax.experiments.table import METRIC_COLUMNS

SMALL = {"num_envs": 16, "rollout_length": 50, "total_steps": 2400, "log_every_steps": 800,
         "hidden_sizes": [16], "update_epochs": 1, "num_minibatches": 2, "shapo_cg_iters": 2,
         "eval_every": 2, "eval_envs": 4, "cost_limit": 1.0}
COMPARED = [c for c in METRIC_COLUMNS if c != "sps"]


def small_spec(**changes) -> SweepSpec:
    data = {"algos": ["ppo_lag", "shapo_ppo_lag"], "envs": ["TinyHazardNav"],
            "grid": {"delta_down": [0.01]}, "seeds": [0, 1], "set": SMALL}
    return SweepSpec.from_dict({**data, **changes})


def by_key(rows):
    keyed = {}
    for row in rows:
        key = (row["run_id"], row["env_steps"])
        assert key not in keyed, f"duplicate row {key}"
        keyed[key] = row
    return keyed


def assert_same_rows(rows, reference):
    rows, reference = by_key(rows), by_key(reference)
    assert rows.keys() == reference.keys()
    for key, row in rows.items():
        got = np.array([row[c] for c in COMPARED], dtype=float)
        want = np.array([reference[key][c] for c in COMPARED], dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=str(key))


# ----- grid and groups --------------------------------------------------------------------
def test_grid_expansion_and_plain_algorithms_collapse():
    spec = SweepSpec.from_dict({
        "algos": ["ppo_lag", "shapo_ppo_lag"], "envs": ["TinyHazardNav"],
        "grid": {"delta_down": [0.002, 0.005], "rho_critic": [0.0, 0.02], "cost_limit": [5, 10]},
        "seeds": 3, "seed": 4,
    })
    members = expand_grid(spec)
    plain = [m for m in members if m.algo == "ppo_lag"]
    shapo = [m for m in members if m.algo == "shapo_ppo_lag"]
    assert len(plain) == 2 * 3 and len(shapo) == 2 * 2 * 2 * 3
    assert {m.seed for m in members} == {4, 5, 6}
    assert all(m.hp_dict["delta_down"] == 0 and m.hp_dict["rho_critic"] == 0 for m in plain)
    combos = {(m.hp_dict["delta_down"], m.hp_dict["rho_critic"], m.hp_dict["cost_limit"],
               m.seed) for m in shapo}
    assert combos == set(itertools.product([0.002, 0.005], [0.0, 0.02], [5.0, 10.0], [4, 5, 6]))
    assert len({m.run_id for m in members}) == len(members)
    assert expand_grid(spec)[0].run_id == members[0].run_id  # stable ids
    full = shapo[0].full_config()
    assert (full.seed, full.delta_down) == (shapo[0].seed, shapo[0].hp_dict["delta_down"])


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="not traced"):
        SweepSpec.from_dict({"algos": ["ppo_lag"], "envs": ["TinyHazardNav"],
                             "grid": {"num_envs": [8]}})
    with pytest.raises(ValueError, match="unknown algorithm"):
        SweepSpec.from_dict({"algos": ["sac"], "envs": ["TinyHazardNav"]})
    with pytest.raises(ValueError, match="delta_down"):
        expand_grid(SweepSpec.from_dict({"algos": ["shapo_ppo_lag"], "envs": ["TinyHazardNav"],
                                         "grid": {"delta_down": [-1.0]}}))


def test_grouping_one_program_per_static_config_and_host_shares():
    spec = SweepSpec.from_dict({
        "algos": ["ppo_lag", "shapo_ppo_lag"], "envs": ["TinyHazardNav"],
        "grid": {"delta_down": [0.002, 0.005], "actor_lr": [1e-4, 3e-4]}, "seeds": 3,
        "set": {"num_envs": 32}, "env_set": {},
    })
    members = expand_grid(spec)
    groups = group_members(members)
    assert [len(g.members) for g in groups] == [2 * 3, 2 * 2 * 3]
    for group in groups:
        assert all(m.config == group.config for m in group.members)
        assert len({m.group_id for m in group.members}) == 1
    assert groups[0].group_id != groups[1].group_id
    chunks = group_members(members, max_group_size=5)
    assert [len(g.members) for g in chunks] == [5, 1, 5, 5, 2]
    for count in (1, 2, 3):
        shares = [assign_groups(chunks, i, count) for i in range(count)]
        indices = sorted(g.index for share in shares for g in share)
        assert indices == list(range(len(chunks)))


def test_env_options_define_the_program_and_bad_ones_fail_before_training(tmp_path, capsys):
    radius = float(fresh_rng().uniform(0.2, 0.8))
    plain = group_members(expand_grid(small_spec()))
    optioned = group_members(expand_grid(small_spec(
        env_set={"TinyHazardNav": {"env_options": {"hazard_radius": radius}}})))
    assert [len(g.members) for g in optioned] == [len(g.members) for g in plain]
    for a, b in zip(plain, optioned, strict=True):
        assert b.config.env_options == (("hazard_radius", radius),)
        assert a.group_id != b.group_id
    out = tmp_path / "bad"
    with pytest.raises(SystemExit):
        sweep_main(["--algos", "ppo_lag", "--envs", "TinyHazardNav", "--env-option", "bogus=1",
                    "--out", str(out), "--quiet"])
    assert "unknown override(s) ['bogus'] for environment 'TinyHazardNav'" in (
        capsys.readouterr().err)
    assert not out.exists()


# ----- running ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep (two groups: ppo_lag and shapo_ppo_lag, two seeds each)."""
    out = tmp_path_factory.mktemp("reference")
    result = run_sweep(small_spec(), out, progress=None)
    assert (result.groups, result.runs_trained, result.runs_skipped) == (2, 4, 0)
    return out, read_table(out)


def test_table_is_tidy(reference):
    out, rows = reference
    with open(out / "table.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert tuple(lines[0]) == COLUMNS
    assert all(len(line) == len(COLUMNS) for line in lines[1:])
    assert len(rows) == len(lines) - 1 == 4 * 3  # 4 runs x 3 log points
    by_key(rows)  # one row per run and log point
    for run_id in {r["run_id"] for r in rows}:
        run = [r for r in rows if r["run_id"] == run_id]
        assert [r["env_steps"] for r in run] == [800, 1600, 2400]
        assert len({(r["algo"], r["env"], r["seed"], r["delta_down"], r["group_id"])
                    for r in run}) == 1
        assert np.isfinite(run[-1]["eval_return"]) and np.isfinite(run[-1]["cumulative_cost"])
        assert np.isnan(run[0]["eval_return"])  # evaluated every 2nd log point and at the end
    shapo = [r for r in rows if r["algo"] == "shapo_ppo_lag"]
    assert all(r["delta_down"] == 0.01 for r in shapo)
    assert all(np.isfinite(r["shapo_kl"]) for r in shapo)
    assert all(r["delta_down"] == 0 for r in rows if r["algo"] == "ppo_lag")


def test_vmapped_members_equal_separate_runs(tmp_path):
    spec = small_spec(algos=["shapo_ppo_lag"], grid={"delta_down": [0.0, 0.05]})
    grouped = run_sweep(spec, tmp_path / "grouped", progress=None)
    assert grouped.groups == 1 and grouped.runs_trained == 4
    separate = run_sweep(SweepSpec.from_dict({**spec.to_dict(), "max_group_size": 1}),
                         tmp_path / "separate", progress=None)
    assert separate.groups == 4
    rows = read_table(tmp_path / "grouped")
    assert_same_rows(rows, read_table(tmp_path / "separate"))
    final = {(r["seed"], r["delta_down"]): r["policy_kl"] for r in rows if r["env_steps"] == 2400}
    assert len(set(final.values())) == 4  # the members really differ


def test_interrupted_sweep_resumes_without_loss_or_duplicates(tmp_path, reference):
    _, reference_rows = reference
    out = tmp_path / "sweep"
    calls = []

    def interrupt(group, done, rows):
        calls.append((group.config.algo, done))
        if group.config.algo == "shapo_ppo_lag" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(small_spec(), out, progress=None, on_chunk=interrupt)
    partial = read_table(out)
    assert len(partial) == 2 * 3 + 2 * 2  # group 1 whole, group 2 two log points
    with open(out / "table.csv", "a") as handle:
        handle.write(",".join(COLUMNS[:3]))  # a torn last line, as a crash would leave
    resumed = run_sweep(small_spec(), out, progress=None)
    assert (resumed.runs_trained, resumed.runs_skipped, resumed.rows_dropped) == (2, 2, 5)
    assert_same_rows(read_table(out), reference_rows)

    # Forget that the last group finished: it is trained again, its rows replaced.
    manifest = out / "complete.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("".join(f"{line}\n" for line in lines if "shapo_ppo_lag" not in line))
    again = run_sweep(small_spec(), out, progress=None)
    assert (again.runs_trained, again.runs_skipped, again.rows_dropped) == (2, 2, 6)
    assert_same_rows(read_table(out), reference_rows)
    done = run_sweep(small_spec(), out, progress=None)
    assert (done.runs_trained, done.runs_skipped) == (0, 4)
    assert_same_rows(read_table(out), reference_rows)


def test_a_setting_keeps_its_colour_across_the_figures(tmp_path, reference, monkeypatch):
    """The reweighting figure holds only SHAPO's settings: each still has the colour of its
    curves in the learning-curve figure (not the first colours of a figure of its own)."""
    from shapo_jax.experiments import plots

    figures = {}

    def keep_figure(fig, stem, formats=()):
        figures[Path(stem).name] = fig
        return []
    monkeypatch.setattr(plots, "save_figure", keep_figure)
    out, _ = reference
    plots.plot_sweep(out, out=tmp_path)

    def line_colours(fig):
        return {line.get_label(): line.get_color() for ax in fig.axes for line in ax.lines
                if not line.get_label().startswith("_")}
    curves = line_colours(figures["curves_TinyHazardNav"])
    reweighting = line_colours(figures["reweighting_TinyHazardNav"])
    (baseline,) = [label for label in curves if label.startswith("ppo_lag")]
    (shapo,) = [label for label in curves if label.startswith("shapo_ppo_lag")]
    assert list(reweighting) == [shapo]
    assert reweighting[shapo] == curves[shapo] != curves[baseline]


def test_cli_sweep_and_plot(tmp_path, reference, capsys):
    _, reference_rows = reference
    out = tmp_path / "cli"
    argv = ["--algos", "ppo_lag", "shapo_ppo_lag", "--envs", "TinyHazardNav",
            "--delta-down", "0.01", "--seeds", "2", "--total-steps", "2400", "--out", str(out),
            "--quiet"]
    argv += [f"--set={k}={v}" for k, v in SMALL.items() if k != "total_steps"]
    assert sweep_main(argv) == 0
    assert_same_rows(read_table(out), reference_rows)
    assert sweep_main(["--dry-run", *argv]) == 0
    assert "ppo_lag on TinyHazardNav (2 runs)" in capsys.readouterr().out
    assert plot_main([str(out), "--out", str(tmp_path / "figures")]) == 0
    for stem in ("curves_TinyHazardNav", "pareto_TinyHazardNav"):
        for fmt in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{stem}.{fmt}").stat().st_size > 1000
    with open(tmp_path / "figures" / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert sorted(s["algo"] for s in summary) == ["ppo_lag", "shapo_ppo_lag"]
    assert all(s["seeds"] == "2" for s in summary)
    with open(tmp_path / "figures" / "against_baseline.csv") as handle:
        (difference,) = list(csv.DictReader(handle))
    finals = {r["run_id"]: r for r in reference_rows if r["env_steps"] == 2400}  # last point
    for key in ("episode_cost", "cumulative_cost"):
        groups = [[r[key] for r in finals.values() if r["algo"] == algo]
                  for algo in ("shapo_ppo_lag", "ppo_lag")]
        want = np.mean(groups[0]) - np.mean(groups[1])
        assert float(difference[f"{key}_diff"]) == pytest.approx(want, rel=1e-6, abs=1e-9)
    with pytest.raises(SystemExit):
        sweep_main(["--algos", "ppo_lag", "--envs", "TinyHazardNav", "--set", "nonsense=1",
                    "--out", str(tmp_path / "bad")])


def test_study_of_train_runs_reads_like_the_sweep(tmp_path, reference):
    """A study directory of shapo-train runs (one per algorithm, seeds vmapped) gives the same
    rows as the sweep of the same members, and shapo-plot's summary of it counts its seeds and
    its budget per run."""
    from shapo_jax.training.cli import main as train_main

    _, reference_rows = reference
    study = tmp_path / "study"
    for algo in ("ppo_lag", "shapo_ppo_lag"):
        argv = ["--env", "TinyHazardNav", "--algo", algo, "--seeds", "2", "--delta-down",
                "0.01", "--total-steps", "2400", "--out", str(study / algo), "--no-plot",
                "--no-tensorboard"]
        argv += [f"--set={k}={v}" for k, v in SMALL.items() if k != "total_steps"]
        assert train_main(argv) == 0
    rows = read_table(study)
    assert {r["run_id"] for r in rows} == {f"study/{a}/seed_{s}"
                                           for a in ("ppo_lag", "shapo_ppo_lag") for s in (0, 1)}
    records = [json.loads(line) for line in
               (study / "ppo_lag" / "metrics.jsonl").read_text().splitlines()]
    per_seed = sorted(r["sps"] for r in rows if r["algo"] == "ppo_lag")
    assert per_seed == pytest.approx(sorted(r["sps"] / 2 for r in records))  # sweep's meaning
    # each run names its program and its settings as the sweep does (unused settings at their
    # off value: plain PPO-Lag's radii are 0 in both)
    named = ("algo", "group_id", *HP_FIELDS)
    assert {tuple(r[c] for c in named) for r in rows} == {tuple(r[c] for c in named)
                                                         for r in reference_rows}
    sweep_ids = {(r["algo"], r["seed"]): r["run_id"] for r in reference_rows}
    for row in rows:  # name each run as the sweep does, then compare value for value
        row["run_id"] = sweep_ids[row["algo"], row["seed"]]
    assert_same_rows(rows, reference_rows)
    assert read_table(study / "ppo_lag") == [r for r in read_table(study)
                                            if r["algo"] == "ppo_lag"]
    assert plot_main([str(study), "--out", str(tmp_path / "figures")]) == 0
    with open(tmp_path / "figures" / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert sorted(s["algo"] for s in summary) == ["ppo_lag", "shapo_ppo_lag"]
    assert all((s["seeds"], s["env_steps"]) == ("2", "2400") for s in summary)
    assert (tmp_path / "figures" / "reweighting_TinyHazardNav.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no run directory"):
        read_table(tmp_path / "figures")
    # The same settings under another static config (here a second study whose PPO-Lag ran
    # with more minibatches) are not pooled with the first's seeds into one mean.
    other = tmp_path / "other" / "ppo_lag"
    shutil.copytree(study / "ppo_lag", other)
    config = json.loads((other / "config.json").read_text())
    config["num_minibatches"] += 2
    (other / "config.json").write_text(json.dumps(config))
    mixed = read_table(study, other.parent)
    programs = sorted({r["group_id"] for r in mixed if r["algo"] == "ppo_lag"})
    assert len(programs) == 2
    with pytest.raises(ValueError, match=rf"ppo_lag on TinyHazardNav: {programs[0]}, "
                                         rf"{programs[1]}.*Plot each source on its own"):
        plot_sweep(study, other.parent, out=tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    assert plot_main([str(study), str(other.parent), "--out", str(tmp_path / "pooled"),
                      "--pool-programs", "--formats", "png"]) == 0
    with open(tmp_path / "pooled" / "summary.csv") as handle:
        pooled = {s["algo"]: s["seeds"] for s in csv.DictReader(handle)}
    assert pooled == {"ppo_lag": "4", "shapo_ppo_lag": "2"}
    # A float field spelled as an integer is the same program, and so are other checkpoint
    # and evaluation intervals (the host's loop decides them between compiled calls).
    config["num_minibatches"] -= 2
    config["max_grad_norm"] = int(config["max_grad_norm"])
    config["checkpoint_every"] += 1 + int(fresh_rng().integers(5))
    config["eval_every"] += 1
    (other / "config.json").write_text(json.dumps(config))
    assert len({r["group_id"] for r in read_table(study, other.parent)
                if r["algo"] == "ppo_lag"}) == 1


# ----- statistics -------------------------------------------------------------------------
def brute_force_front(costs, returns):
    n = len(costs)
    return np.array([not any(costs[j] <= costs[i] and returns[j] >= returns[i]
                             and (costs[j] < costs[i] or returns[j] > returns[i])
                             for j in range(n)) for i in range(n)])


@pytest.mark.parametrize("seed", range(6))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    if seed % 2:  # many ties
        costs, returns = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
    else:
        costs, returns = rng.normal(size=n), rng.normal(size=n)
    np.testing.assert_array_equal(pareto_front(costs, returns), brute_force_front(costs, returns))


def test_pareto_front_ignores_nan_and_keeps_identical_points():
    mask = pareto_front(np.array([1.0, 1.0, np.nan, 0.5]), np.array([2.0, 2.0, 9.0, 1.0]))
    np.testing.assert_array_equal(mask, [True, True, False, True])


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 200])
def test_student_t_quantile_matches_scipy(df):
    for p in (0.6, 0.9, 0.975, 0.995, 0.025):
        assert student_t_quantile(p, df) == pytest.approx(scipy.stats.t.ppf(p, df), rel=1e-9)


def test_confidence_band_matches_scipy():
    rng = fresh_rng()
    values = rng.normal(3.0, 2.0, size=(5, 7))
    values[0, 2] = np.nan  # one seed missing a point: n = 4 there
    values[1:, 6] = np.nan  # a single finite value: no band
    mean, low, high = confidence_band(values, 0.95)
    for t in range(6):
        column = values[:, t][np.isfinite(values[:, t])]
        want = scipy.stats.t.interval(0.95, len(column) - 1, loc=column.mean(),
                                      scale=scipy.stats.sem(column))
        assert mean[t] == pytest.approx(column.mean())
        assert (low[t], high[t]) == pytest.approx(want, rel=1e-9)
    assert mean[6] == values[0, 6] and np.isnan(low[6]) and np.isnan(high[6])


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_difference_band_is_welchs_interval(confidence):
    rng = fresh_rng()
    for _ in range(5):
        a = rng.normal(rng.normal(), rng.uniform(0.1, 3.0), size=int(rng.integers(2, 9)))
        b = rng.normal(rng.normal(), rng.uniform(0.1, 3.0), size=int(rng.integers(2, 9)))
        want = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
        diff, low, high = difference_band(np.append(a, np.nan), b, confidence)
        assert diff == pytest.approx(a.mean() - b.mean())
        assert (low, high) == pytest.approx((want.low, want.high), rel=1e-8)
    diff, low, high = difference_band(np.array([1.0]), np.array([0.0, 2.0]))
    assert diff == 0.0 and np.isnan(low) and np.isnan(high)  # one seed: no interval


def final_record(algo, seed, rng, **hp):
    values = {"delta_down": 0.0, "rho_critic": 0.0, "cost_limit": 25.0, "actor_lr": 3e-4,
              "critic_lr": 3e-4, "lagrange_lr": 0.035, **hp}
    return {"run_id": f"{algo}-{hp}-{seed}", "env": "TinyHazardNav", "algo": algo,
            "seed": seed, "env_steps": 1000, **values,
            **{k: float(rng.normal()) for k in ("episode_return", "episode_cost",
                                                 "cumulative_cost")}}


def test_against_baselines_pairs_each_shapo_setting_with_its_lagrangian_one():
    rng = fresh_rng()
    shapo = {"delta_down": 0.01, "rho_critic": 0.01}
    finals = ([final_record("ppo_lag", s, rng) for s in range(3)]
              + [final_record("ppo_lag", s, rng, cost_limit=10.0) for s in range(3)]
              + [final_record("shapo_ppo_lag", s, rng, **shapo) for s in range(4)]
              + [final_record("shapo_ppo_lag", s, rng, delta_down=0.02, rho_critic=0.01,
                              cost_limit=10.0) for s in range(2)]
              + [final_record("shapo_trpo_lag", s, rng, **shapo) for s in range(3)])  # no TRPO
    rows = against_baselines(finals)
    assert [(r["algo"], r["delta_down"], r["cost_limit"], r["baseline"], r["seeds"],
             r["baseline_seeds"]) for r in rows] == [
        ("shapo_ppo_lag", 0.01, 25.0, "ppo_lag", 4, 3),
        ("shapo_ppo_lag", 0.02, 10.0, "ppo_lag", 2, 3)]
    for row in rows:
        mine = [r for r in finals if (r["algo"], r["delta_down"], r["cost_limit"])
                == (row["algo"], row["delta_down"], row["cost_limit"])]
        base = [r for r in finals if (r["algo"], r["cost_limit"])
                == ("ppo_lag", row["cost_limit"])]
        for key in ("episode_return", "episode_cost", "cumulative_cost"):
            want = scipy.stats.ttest_ind([r[key] for r in mine], [r[key] for r in base],
                                         equal_var=False).confidence_interval(0.95)
            assert (row[f"{key}_diff_low"], row[f"{key}_diff_high"]) == pytest.approx(
                (want.low, want.high), rel=1e-8)


def test_a_baseline_that_ran_further_is_compared_at_the_shapo_budget():
    """SHAPO runs logged to step k, PPO-Lag runs to a later step: with the log points, the
    baseline's finals are its means over the last 10% of its points up to SHAPO's budget
    (NumPy), its cumulative cost the one at that budget, and the interval Welch's (SciPy)."""
    rng = fresh_rng()
    points, reached = int(rng.integers(20, 40)), int(rng.integers(5, 15))
    rows = []
    for algo, seeds, last in (("ppo_lag", 3, points), ("shapo_ppo_lag", 4, reached)):
        hp = {"delta_down": 0.01, "rho_critic": 0.01} if algo.startswith("shapo") else {}
        for seed in range(seeds):
            record = final_record(algo, seed, rng, **hp)
            for step in range(1, last + 1):
                rows.append({**record, "env_steps": 1000 * step,
                             **{k: float(rng.normal(step, 1.0)) for k in
                                ("episode_return", "episode_cost", "cumulative_cost")}})
    finals = final_metrics(rows)
    (row,) = against_baselines(finals, rows=rows)
    assert (row["env_steps"], row["baseline_env_steps"]) == (1000 * reached, 1000 * reached)
    (unmatched,) = against_baselines(finals)  # without the log points: each at its own end
    assert unmatched["baseline_env_steps"] == 1000 * points
    tail = max(1, int(np.ceil(0.1 * reached)))
    def finals_of(algo, key):
        values = []
        for seed in sorted({r["seed"] for r in rows if r["algo"] == algo}):
            run = [r[key] for r in rows if r["algo"] == algo and r["seed"] == seed
                   and r["env_steps"] <= 1000 * reached]
            values.append(run[-1] if key == "cumulative_cost" else np.mean(run[-tail:]))
        return values

    for key in ("episode_return", "episode_cost", "cumulative_cost"):
        shapo, base = finals_of("shapo_ppo_lag", key), finals_of("ppo_lag", key)
        want = scipy.stats.ttest_ind(shapo, base, equal_var=False).confidence_interval(0.95)
        assert row[f"{key}_diff"] == pytest.approx(np.mean(shapo) - np.mean(base))
        assert (row[f"{key}_diff_low"], row[f"{key}_diff_high"]) == pytest.approx(
            (want.low, want.high), rel=1e-8)


def test_baseline_setting_resets_what_only_shapo_reads():
    values = {"delta_down": 0.01, "rho_critic": 0.02, "cost_limit": 10.0, "actor_lr": 1e-3,
              "critic_lr": 2e-3, "lagrange_lr": 0.05}
    hp = tuple(values[f] for f in HP_FIELDS)
    plain = tuple({**values, "delta_down": 0.0, "rho_critic": 0.0}[f] for f in HP_FIELDS)
    assert baseline_setting(("SafetyPointGoal1", "shapo_trpo_lag", hp)) == (
        "SafetyPointGoal1", "trpo_lag", plain)
    assert baseline_setting(("SafetyPointGoal1", "ppo_lag", hp)) is None
