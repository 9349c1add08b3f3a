"""study/report_10m.py's tables: training wall time summed over the log chunks, the verdict of
a SHAPO-minus-baseline interval, and the cross-check table's paired intervals, each against an
independent computation (a closed-form sum, scipy's Student t) on fresh random inputs."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import fresh_rng
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("report_10m", ROOT / "study/report_10m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", cell)]


def test_wall_hours_sums_each_log_chunk_over_its_rate(report, tmp_path: Path) -> None:
    rng = fresh_rng()
    seeds = int(rng.integers(1, 5))
    chunks = rng.integers(1, 50, size=int(rng.integers(2, 8))) * 20480
    rates = rng.uniform(500, 5000, size=len(chunks))
    steps = np.cumsum(chunks)
    with open(tmp_path / "metrics.jsonl", "w") as handle:
        for step, rate in zip(steps, rates, strict=True):
            for seed in range(seeds):  # one record per seed, the program's rate in each
                handle.write(json.dumps({"env_steps": int(step), "seed": seed,
                                         "sps": float(rate)}) + "\n")
        handle.write(json.dumps({"env_steps": int(steps[-1]), "eval_return": 1.0}) + "\n")
    expected = float(np.sum(chunks * seeds / rates)) / 3600
    assert report.wall_hours(tmp_path) == pytest.approx(expected, rel=1e-12)


def test_difference_cell_says_which_side_of_zero_the_interval_lies(report) -> None:
    rng = fresh_rng()
    for _ in range(20):
        low, high = np.sort(rng.normal(size=2) * 3)
        diff = rng.uniform(low, high)
        row = {f"episode_return_diff{end}": str(v)
               for end, v in (("", diff), ("_low", low), ("_high", high))}
        cell = report.difference_cell(row, "episode_return")
        verdict = "higher" if low > 0 else "lower" if high < 0 else "not resolved"
        assert cell.endswith(f"({verdict})"), (cell, low, high)
        assert _numbers(cell) == pytest.approx([diff, low, high], abs=0.006)
    row = {"episode_return_diff": "1.5", "episode_return_diff_low": "nan",
           "episode_return_diff_high": "nan"}
    assert report.difference_cell(row, "episode_return") == "+1.50 (no interval)"


def _crosscheck_record(part: str, member: int, port: np.ndarray, original: np.ndarray,
                       episodes: int = 32) -> dict:
    """One study/crosscheck_10m.py record: (return, cost) means on each side, on the seed's
    own layouts, as the script runs them."""
    return {"part": part, "member": member, "episodes": episodes, "checkpoint_step": 490,
            "layout_seed": member * episodes,
            "port": {"episode_return_mean": float(port[0]), "episode_cost_mean": float(port[1])},
            "original": {"episode_return_mean": float(original[0]),
                         "episode_cost_mean": float(original[1])}}


def test_crosscheck_table_gives_no_interval_where_the_seeds_shared_their_layouts(
        report, tmp_path: Path) -> None:
    """With one set of layouts for every seed the interval over seeds misses that set's luck:
    for records without a layout seed of their own (the script's first form) the table gives
    the means alone, and says why."""
    rng = fresh_rng()
    path = tmp_path / "crosscheck.jsonl"
    # one shared layout seed; the script's first form (no layout seed, no checkpoint named);
    # a partial rerun in which only the first seed's record is of the first form
    first_form = {"layout_seed": None, "checkpoint_step": None}
    for old, updates in (({0: {"layout_seed": 0}, 1: {"layout_seed": 0}, 2: {"layout_seed": 0}},
                          "490"),
                         ({0: first_form, 1: first_form, 2: first_form}, "final"),
                         ({0: first_form}, "490/final")):
        port, original = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
        with open(path, "w") as handle:
            for member in range(3):
                record = _crosscheck_record("ppo_lag", member, port[member], original[member])
                record.update(old.get(member, {}))
                handle.write(json.dumps({k: v for k, v in record.items() if v is not None})
                             + "\n")
        (line,) = report.crosscheck_markdown(path).splitlines()[2:]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == "ppo_lag (seeds shared layouts: no intervals)"
        assert cells[2] == updates
        expected = [port[:, 0].mean(), original[:, 0].mean(), (original - port)[:, 0].mean(),
                    port[:, 1].mean(), original[:, 1].mean(), (original - port)[:, 1].mean()]
        assert [_numbers(c) for c in cells[4:]] == [pytest.approx([e], abs=0.006)
                                                    for e in expected]


def test_crosscheck_table_has_student_t_intervals_of_the_paired_difference(
        report, tmp_path: Path) -> None:
    rng = fresh_rng()
    parts = {"ppo_lag": int(rng.integers(2, 6)), "trpo_lag": int(rng.integers(2, 6))}
    values = {}
    with open(tmp_path / "crosscheck.jsonl", "w") as handle:
        for part, seeds in parts.items():
            port = rng.normal(10, 5, size=(seeds, 2))
            original = port + rng.normal(1, 2, size=(seeds, 2))
            values[part] = (port, original)
            for member in range(seeds):
                # an earlier record of the same seed, superseded by the one after it
                stale = _crosscheck_record(part, member, rng.normal(size=2), rng.normal(size=2))
                handle.write(json.dumps(stale) + "\n")
                record = _crosscheck_record(part, member, port[member], original[member])
                handle.write(json.dumps(record) + "\n")
    lines = report.crosscheck_markdown(tmp_path / "crosscheck.jsonl").splitlines()
    assert len(lines) == 2 + len(parts)
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        part = cells[0]
        port, original = values[part]
        assert int(cells[1]) == len(port) and cells[2] == "490" and int(cells[3]) == 32
        for column, metric in ((4, 0), (7, 1)):  # return, then episode cost: port, original, diff
            for offset, sample in enumerate((port[:, metric], original[:, metric],
                                             original[:, metric] - port[:, metric])):
                assert _numbers(cells[column + offset]) == pytest.approx(
                    _t_interval(sample), abs=0.006), (part, column + offset)


def test_mechanism_table_gives_the_seeds_means_at_the_milestones(report, tmp_path: Path) -> None:
    """A SHAPO part and its baseline with random diagnostics, logged every 204,800 steps to
    10M: the table's rows are the logged steps nearest 1M, 2.5M, 5M, 7.5M and 10M, each cell
    the seeds' NumPy mean, '-' where the metric was not yet logged, and the baseline's PPO
    epochs after the slash."""
    rng = fresh_rng()
    seeds, steps = int(rng.integers(2, 5)), np.arange(1, 50) * 204_800
    first_geometric = int(rng.integers(5, 20))  # logged from this chunk on
    records = {}
    for part, algo in (("ppo_lag", "ppo_lag"), ("shapo_ppo_lag-d0.005", "shapo_ppo_lag")):
        run = tmp_path / part
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"algo": algo, "delta_down": 0.005}))
        rows = []
        for i, step in enumerate(steps):
            for seed in range(seeds):
                row = {"env_steps": int(step), "seed": seed,
                       "ppo_epochs_done": float(rng.integers(1, 41))}
                if algo.startswith("shapo"):
                    row.update(shapo_radius=0.005, shapo_kl=rng.uniform(0, 0.02),
                               shapo_kl_max=rng.uniform(0.02, 2), shapo_weight_costly=
                               rng.uniform(0.9, 3), shapo_weight_safe=rng.uniform(0.9, 3))
                    if i >= first_geometric:
                        row.update(shapo_geometric_weight_costly=rng.uniform(0.9, 1.1),
                                   shapo_geometric_weight_safe=rng.uniform(0.9, 1.1))
                rows.append(row)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        records[part] = rows
    lines = report.mechanism_markdown(tmp_path).splitlines()
    nearest = sorted({int(steps[np.argmin(np.abs(steps - m))]) for m in report.MILESTONES})
    assert [int(line.split("|")[2].replace(",", "")) for line in lines[2:]] == nearest
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        step = int(cells[1].replace(",", ""))
        at = {part: [r for r in rows if r["env_steps"] == step]
              for part, rows in records.items()}
        for (_, key), cell in zip(report.MECHANISM_COLUMNS, cells[3:], strict=True):
            values = [r[key] for r in at["shapo_ppo_lag-d0.005"] if key in r]
            if not values:
                assert cell == "-", (key, step)
                continue
            numbers = [float(x) for x in cell.split(" / ")]
            assert numbers[0] == pytest.approx(np.mean(values), rel=1e-3), (key, step)
            if key == "ppo_epochs_done":
                baseline = np.mean([r[key] for r in at["ppo_lag"]])
                assert numbers[1] == pytest.approx(baseline, rel=5e-3)


@pytest.fixture(scope="module")
def noise():
    spec = importlib.util.spec_from_file_location("shapo_gradient_noise",
                                                  ROOT / "study/shapo_gradient_noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradient_signal_fraction_is_one_for_agreement_and_one_over_m_for_noise(noise) -> None:
    rng = fresh_rng()
    m, dim = int(rng.integers(50, 200)), int(rng.integers(2000, 4000))
    same = np.tile(rng.normal(size=dim), (m, 1))
    assert noise.signal_fraction(same) == pytest.approx(1.0)
    centred = rng.normal(size=(m, dim))
    centred -= centred.mean(0)
    assert noise.signal_fraction(centred) == pytest.approx(0.0, abs=1e-12)
    # independent noise: E||mean||^2 = dim / m, E||v||^2 = dim
    assert noise.signal_fraction(rng.normal(size=(m, dim))) == pytest.approx(1 / m, rel=0.15)


def test_gradient_noise_summary_rows_and_intervals(noise, tmp_path: Path) -> None:
    rng = fresh_rng()
    files, expected = [], []
    for seed in range(int(rng.integers(2, 5))):
        kl, sg, st, cos = rng.uniform(size=4)
        plain, shapo = rng.normal(size=(2, 40)) * 0.01
        setting = {"minibatch": 64, "fisher_fraction": 0.25}
        result = {"seed": seed, "checkpoint": 90, "records": [
            {**setting, "radius": 0.0, "kl": 0.0, "signal_g": sg, "signal_g_tilde": sg,
             "cosine": 1.0},
            {**setting, "radius": 0.005, "kl": kl, "signal_g": sg, "signal_g_tilde": st,
             "cosine": cos}],
            "epochs": [{**setting, "radius": 0.0, "gain": plain.tolist()},
                       {**setting, "radius": 0.005, "gain": shapo.tolist()}]}
        path = tmp_path / f"m{seed}.json"
        path.write_text(json.dumps(result))
        files.append(str(path))
        expected.append([kl, sg, st, cos, plain[9], shapo[9], plain[-1], shapo[-1],
                         plain[-1] - shapo[-1]])
    lines = noise.summarize(files).splitlines()
    assert len(lines) == 2 + len(files) + 1
    assert "after 40 epochs" in lines[0]
    result["epochs"][1]["minibatch"] = 2560  # an epoch run of another setting is refused
    Path(files[-1]).write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="not of its gradient record's setting"):
        noise.summarize(files)
    for line, row in zip(lines[2:-1], expected, strict=False):
        cells = [float(c) for c in line.strip("|").split("|")[1:]]
        assert cells == pytest.approx(row, rel=1e-3, abs=1e-7)
    cells = lines[-1].strip("|").split("|")[1:]
    assert len(cells) == 9
    for column, cell in enumerate(cells):  # "mean [low, high]", each in %.4g
        numbers = [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", cell)]
        values = np.array(expected)[:, column]
        assert numbers == pytest.approx(_t_interval(values), rel=2e-3, abs=1e-6), column


def test_studies_table_has_welch_intervals_where_the_budgets_match(
        report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts both studies ran: this study's seeds minus the other's, against scipy's Welch
    interval, where both parts reached one budget; a part of one study only is left out."""
    rng = fresh_rng()
    keys = report.DIFFERENCE_KEYS

    def part(seeds: int, steps: int) -> list[dict]:
        return [{"env_steps": steps, **{k: float(rng.normal(10, 5)) for k in keys}}
                for _ in range(seeds)]

    finals = {"mine": {"ppo_lag": part(int(rng.integers(2, 6)), 10_035_200),
                       "shapo_ppo_lag-d0.005": part(4, 1_024_000), "trpo_lag": part(3, 1)},
              "theirs": {"ppo_lag": part(int(rng.integers(2, 6)), 10_035_200),
                         "shapo_ppo_lag-d0.005": part(4, 10_035_200)}}
    monkeypatch.setattr(report, "finals_by_part", lambda study: finals[study.name])
    lines = report.studies_markdown(tmp_path / "mine", tmp_path / "theirs").splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["ppo_lag",
                                                                  "shapo_ppo_lag-d0.005"]
    assert "not compared: the budgets differ" in lines[3]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    for key, cell in zip(keys, cells[2:], strict=True):
        a, b = (np.array([r[key] for r in finals[s]["ppo_lag"]]) for s in ("mine", "theirs"))
        welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert _numbers(cell) == pytest.approx([a.mean() - b.mean(), welch.low, welch.high],
                                               abs=0.006), key
