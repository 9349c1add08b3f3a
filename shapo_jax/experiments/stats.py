"""Statistics over seeds: Student-t confidence bands, final values of runs, Pareto fronts, and
each SHAPO setting's difference from the Lagrangian baseline it perturbs.

The statistics need NumPy only: the t quantile comes from the regularised incomplete beta
function (continued fraction, as in Numerical Recipes) and bisection.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from shapo_jax.experiments.grid import HP_FIELDS
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.hyperparameters import TRACED_SETTINGS

Setting = tuple[str, str, tuple[float, ...]]  # (env, algo, hyperparameter values)


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` > 0 degrees of freedom (bisection, ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def confidence_band(
    values: np.ndarray, confidence: float = 0.95, axis: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over `axis` (the seeds): mean +- t_{(1+c)/2, n-1} s / sqrt(n).

    NaNs are ignored (n counts the finite values); where n < 2 the band is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    n = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        centred = np.where(finite, values - np.expand_dims(mean, axis), 0.0)
        var = (centred ** 2).sum(axis=axis) / np.maximum(n - 1, 1)
        quantiles = np.vectorize(
            lambda k: student_t_quantile(0.5 + confidence / 2, k - 1) if k >= 2 else np.nan,
            otypes=[float],
        )(n)
        half = quantiles * np.sqrt(var) / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


def difference_band(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's interval for the difference of the means of two
    independent groups (the seeds of two settings), whose variances may differ; t quantile at
    the Welch-Satterthwaite degrees of freedom. NaNs are ignored; the band is NaN where a group
    has fewer than 2 finite values."""
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in (a, b)]
    groups = [g[np.isfinite(g)] for g in groups]
    if any(g.size == 0 for g in groups):
        return math.nan, math.nan, math.nan
    diff = float(groups[0].mean() - groups[1].mean())
    if any(g.size < 2 for g in groups):
        return diff, math.nan, math.nan
    shares = [g.var(ddof=1) / g.size for g in groups]  # squared standard errors
    spread = sum(shares)
    if spread == 0.0:
        return diff, diff, diff
    df = spread ** 2 / sum(v ** 2 / (g.size - 1) for v, g in zip(shares, groups, strict=True))
    half = student_t_quantile(0.5 + confidence / 2, df) * math.sqrt(spread)
    return diff, diff - half, diff + half


def pareto_front(costs: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (low cost, high return are better).

    A point is dominated when another has cost <= and return >= with one strict; identical
    points do not dominate each other. NaN points are never on the front.
    """
    costs = np.asarray(costs, dtype=np.float64)
    returns = np.asarray(returns, dtype=np.float64)
    if costs.shape != returns.shape or costs.ndim != 1:
        raise ValueError(f"costs and returns must be 1-D of one length: {costs.shape}, "
                         f"{returns.shape}")
    mask = np.zeros(costs.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(costs) & np.isfinite(returns))
    order = valid[np.lexsort((-returns[valid], costs[valid]))]  # cost up, return down
    best_return, best_cost = -np.inf, np.nan
    for i in order:
        if returns[i] > best_return:
            best_return, best_cost = returns[i], costs[i]
            mask[i] = True
        elif returns[i] == best_return and costs[i] == best_cost:
            mask[i] = True
    return mask


def setting_of(row: dict[str, Any]) -> Setting:
    return (row["env"], row["algo"], tuple(float(row[f]) for f in HP_FIELDS))


def programs_per_setting(rows: list[dict[str, Any]]) -> dict[Setting, list[str]]:
    """The settings whose runs come from more than one program (group_id: the static config),
    with those programs. Their seeds differ in more than the seed and would be pooled into one
    mean: a sweep's members never do, but two sources may (another preset, batch or budget)."""
    programs: dict[Setting, set[str]] = defaultdict(set)
    for row in rows:
        programs[setting_of(row)].add(row["group_id"])
    return {setting: sorted(ids) for setting, ids in programs.items() if len(ids) > 1}


def by_setting(records: list[dict[str, Any]]) -> dict[Setting, list[dict[str, Any]]]:
    """`records` (final values, one per run) grouped by setting, in their order."""
    groups: dict[Setting, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[setting_of(record)].append(record)
    return groups


def baseline_setting(setting: Setting) -> Setting | None:
    """The Lagrangian setting a SHAPO setting perturbs: the algorithm without `shapo_`, the
    settings only SHAPO reads (delta_down, rho_critic) at their off value and every other one
    equal. None for a setting that is not SHAPO's."""
    env, algo, hp = setting
    if not algo.startswith("shapo_"):
        return None
    base = TrainConfig(env=env, algo=algo.removeprefix("shapo_"))
    values = tuple(s.off_value if s.off_value is not None and not s.used_by(base) else value
                   for s, value in zip(TRACED_SETTINGS, hp, strict=True))
    return env, base.algo, values


DIFFERENCE_KEYS = ("episode_return", "episode_cost", "cumulative_cost")


def against_baselines(finals: list[dict[str, Any]], confidence: float = 0.95,
                      rows: list[dict[str, Any]] | None = None,
                      final_fraction: float = 0.1) -> list[dict[str, Any]]:
    """Per SHAPO setting whose baseline (`baseline_setting`) has runs among `finals`: its seed
    counts and, for each of DIFFERENCE_KEYS, the difference SHAPO - baseline of the final
    values' means over seeds with Welch's interval (`difference_band`; the seeds of the two
    settings are independent runs). An interval above 0 is a higher value than the baseline's
    at `confidence`, one holding 0 a difference these seeds do not resolve.

    With `rows` (the log points `finals` came from, by `final_metrics(rows, final_fraction)`),
    a baseline that ran further than the SHAPO setting is taken at the SHAPO setting's budget:
    its finals from its log points up to that many env steps, so that a setting still running
    is compared like for like. `env_steps` and `baseline_env_steps` give the budgets compared."""
    groups = by_setting(finals)
    out = []
    for setting, records in sorted(groups.items()):
        baseline = baseline_setting(setting)
        if baseline not in groups:
            continue
        env, algo, hp = setting
        budget = max(r["env_steps"] for r in records)
        base_records = groups[baseline]
        if rows is not None and max(r["env_steps"] for r in base_records) > budget:
            runs = {r["run_id"] for r in base_records}
            base_records = final_metrics([r for r in rows if r["run_id"] in runs
                                          and r["env_steps"] <= budget], final_fraction)
        row: dict[str, Any] = {"env": env, "algo": algo, **dict(zip(HP_FIELDS, hp, strict=True)),
                               "baseline": baseline[1], "seeds": len(records),
                               "baseline_seeds": len(base_records), "env_steps": budget,
                               "baseline_env_steps": max(r["env_steps"] for r in base_records)}
        for key in DIFFERENCE_KEYS:
            diff, low, high = difference_band(np.array([r[key] for r in records]),
                                              np.array([r[key] for r in base_records]),
                                              confidence)
            row[f"{key}_diff"], row[f"{key}_diff_low"], row[f"{key}_diff_high"] = diff, low, high
        out.append(row)
    return out


def _by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        runs[row["run_id"]].append(row)
    for run in runs.values():
        run.sort(key=lambda r: r["env_steps"])
    return runs


def diverged_runs(rows: list[dict[str, Any]]) -> set[str]:
    """The runs flagged diverged at some log point: they have no figures and are left out of
    every summary, curve and Pareto front."""
    return {r["run_id"] for r in rows if r.get("diverged", 0.0) == 1.0}


def healthy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` without those of diverged runs."""
    diverged = diverged_runs(rows)
    return [r for r in rows if r["run_id"] not in diverged]


FINAL_KEYS = ("episode_return", "episode_cost", "eval_return", "eval_cost",
              "lagrange_multiplier")


def final_metrics(rows: list[dict[str, Any]], fraction: float = 0.1) -> list[dict[str, Any]]:
    """One record per run: the mean of each of FINAL_KEYS over the last `fraction` of its log
    points (at least one, NaNs ignored), and the cumulative cost at its last log point."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    out = []
    for run_id, run in _by_run(rows).items():
        last = run[-max(1, math.ceil(fraction * len(run))):]
        record = {"run_id": run_id, "env": run[0]["env"], "algo": run[0]["algo"],
                  "seed": run[0]["seed"], "env_steps": run[-1]["env_steps"],
                  **{f: run[0][f] for f in HP_FIELDS},
                  "cumulative_cost": run[-1]["cumulative_cost"]}
        for key in FINAL_KEYS:
            values = np.array([r.get(key, math.nan) for r in last], dtype=np.float64)
            finite = values[np.isfinite(values)]
            record[key] = float(finite.mean()) if finite.size else math.nan
        out.append(record)
    return out


SUMMARY_KEYS = ("episode_return", "episode_cost", "cumulative_cost", "eval_return", "eval_cost")


def summarize_runs(finals: list[dict[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Per (env, algo, setting): seed count, budget per run (env_steps, the longest run's) and
    mean, low, high of each of SUMMARY_KEYS."""
    groups = by_setting(finals)
    out = []
    for (env, algo, hp), records in groups.items():
        summary: dict[str, Any] = {"env": env, "algo": algo,
                                   **dict(zip(HP_FIELDS, hp, strict=True)),
                                   "seeds": len(records),
                                   "env_steps": max(r["env_steps"] for r in records)}
        for key in SUMMARY_KEYS:
            mean, low, high = confidence_band(np.array([[r[key]] for r in records]), confidence)
            summary[key], summary[f"{key}_low"], summary[f"{key}_high"] = (
                float(mean[0]), float(low[0]), float(high[0]))
        out.append(summary)
    return out


def learning_curves(
    rows: list[dict[str, Any]], key: str, confidence: float = 0.95
) -> dict[Setting, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per setting: (env_steps, mean, low, high) of `key` over seeds, aligned on env steps."""
    per_setting: dict[Setting, dict[str, dict[int, float]]] = defaultdict(dict)
    for run_id, run in _by_run(rows).items():
        per_setting[setting_of(run[0])][run_id] = {r["env_steps"]: r.get(key, math.nan)
                                                   for r in run}
    curves = {}
    for setting, runs in per_setting.items():
        steps = np.array(sorted({s for run in runs.values() for s in run}))
        values = np.array([[run.get(int(s), math.nan) for s in steps] for run in runs.values()],
                          dtype=np.float64)
        curves[setting] = (steps, *confidence_band(values, confidence, axis=0))
    return curves
