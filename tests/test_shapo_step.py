"""The SHAPO step both learners share: the Fisher subsample rule, its diagnostics, and the
factories' one signature (`update(learner, batch, key, hp)`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from helpers import fresh_rng, fresh_seed, numpy_subsample

import envs
from shapo_jax.io import append_jsonl, atomic_save, atomic_write_text, read_jsonl
from shapo_jax.training import TrainConfig, make_train
from shapo_jax.update import UpdateHyperparameters, fisher_subsample
from shapo_jax.update.shapo_step import shapo_diagnostics


def test_fisher_subsample_is_evenly_spaced_and_exactly_the_fraction():
    rng = fresh_rng()
    for _ in range(20):
        n = int(rng.integers(1, 500))
        fraction = float(rng.uniform(0.01, 1.0))
        obs = rng.normal(size=(n, 3)).astype(np.float32)
        got = np.asarray(fisher_subsample(jnp.asarray(obs), fraction))
        want = numpy_subsample(obs, fraction)
        np.testing.assert_array_equal(got, want)
        # round(): within half a sample of the fraction (or the one sample of a tiny batch).
        assert abs(len(got) - fraction * n) <= 0.5 or len(got) == 1
    # 30% is 30%, whatever the batch (the old TRPO rule, every 3rd state, took 33%).
    assert fisher_subsample(jnp.zeros((1000, 1)), 0.3).shape[0] == 300
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            fisher_subsample(jnp.zeros((4, 1)), fraction)


@pytest.mark.parametrize("algo", ["ppo_lag", "shapo_ppo_lag", "trpo_lag", "shapo_trpo_lag"])
def test_every_learner_has_the_same_update_signature(algo):
    config = TrainConfig(env="TinyHazardNav", algo=algo, num_envs=8, rollout_length=8,
                         num_minibatches=2, update_epochs=1, critic_epochs=1)
    trainer = make_train(config, envs.make("TinyHazardNav"))
    state = trainer.init(jax.random.PRNGKey(fresh_seed()))
    _, metrics = trainer.update(state)  # a real batch from a real rollout
    assert np.isfinite(float(metrics["actor_objective"]))
    assert ("shapo_kl" in metrics) == config.uses_shapo
    assert ("trpo_kl" in metrics) == config.uses_trpo
    np.testing.assert_array_equal(np.asarray(metrics["shapo_radius"]),
                                  np.float32(config.traced_values()["delta_down"]))
    assert isinstance(UpdateHyperparameters(jnp.float32(0), jnp.float32(0)).shapo_radius,
                      jax.Array)


# ----- durable files --------------------------------------------------------------------

def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "deep" / "result.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    figure = tmp_path / "plot.png"
    atomic_save(figure, lambda tmp: tmp.write_bytes(b"png:" + tmp.suffix.encode()))
    assert figure.read_bytes() == b"png:.png"  # the writer saw the final suffix
    with pytest.raises(RuntimeError):
        atomic_save(figure, lambda tmp: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert figure.read_bytes() == b"png:.png"  # a failed write keeps the old file
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "plot.png", "result.txt"]


def test_appended_records_survive_a_torn_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as handle:
        handle.write('{"a": 3')  # an interrupted write
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_shapo_diagnostics_against_scipy_densities_and_numpy_kl():
    """shapo_diagnostics on random Gaussian policies at theta and theta + eps: the weights'
    arithmetic and geometric means per group from SciPy's densities, the per-state KL's mean
    and maximum from a NumPy closed form."""
    rng = fresh_rng()
    n, act = int(rng.integers(20, 200)), 2
    mean, perturbed_mean = rng.normal(size=(n, act)), rng.normal(size=(n, act))
    log_std, perturbed_log_std = rng.normal(0, 0.3, size=act), rng.normal(0, 0.3, size=act)
    actions = mean + np.exp(log_std) * rng.normal(size=(n, act))
    cost = np.where(rng.uniform(size=n) < 0.3, 1.0, 0.0)
    cost[:2] = [1.0, 0.0]

    def log_density(m, ls):
        return scipy.stats.norm.logpdf(actions, m, np.exp(ls)).sum(axis=1)

    log_prob, perturbed_log_prob = log_density(mean, log_std), log_density(perturbed_mean,
                                                                           perturbed_log_std)
    as_aux = [jnp.asarray(x, jnp.float32) for x in (log_prob, mean, log_std,
                                                   perturbed_log_prob, perturbed_mean,
                                                   perturbed_log_std)]
    got = {k: float(v) for k, v in shapo_diagnostics(
        tuple(as_aux[:3]), tuple(as_aux[3:]), jnp.asarray(cost, jnp.float32)).items()}

    kl = (perturbed_log_std - log_std + (np.exp(2 * log_std) + (mean - perturbed_mean) ** 2)
          / (2 * np.exp(2 * perturbed_log_std)) - 0.5).sum(axis=1)
    log_w = perturbed_log_prob - log_prob
    costly = cost > 0
    want = {"shapo_kl": kl.mean(), "shapo_kl_max": kl.max(),
            "shapo_weight_costly": np.exp(log_w[costly]).mean(),
            "shapo_weight_safe": np.exp(log_w[~costly]).mean(),
            "shapo_geometric_weight_costly": np.exp(log_w[costly].mean()),
            "shapo_geometric_weight_safe": np.exp(log_w[~costly].mean())}
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=2e-4, err_msg=key)
