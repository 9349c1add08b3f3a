#!/usr/bin/env python
"""How much of SHAPO's minibatch gradient is signal: the plain gradient g and SHAPO's g_tilde
of every minibatch of one real batch, at a trained checkpoint (RESULTS.md, SHAPO-PPO-Lag at
10M steps).

    .venv/bin/python study/shapo_gradient_noise.py RUN_DIR [--checkpoint N] [--member M]
        [--minibatches 320 8] [--radii 0 0.001 0.005 0.02] [--fisher-fractions 0.25 1]

One rollout of the run's configuration from the checkpoint's state (its envs, its
normaliser, its multiplier) gives the batch the next update would see. For each number of
minibatches, radius and Fisher fraction, every minibatch's g and g_tilde are taken at the
checkpoint's theta, nothing stepped (`shapo_jax.update.shapo_step.policy_gradient`, the
learner's own code). Per setting, over the M minibatches' gradients v_i:

- signal = ||mean_i v_i||^2 / mean_i ||v_i||^2: 1 when every minibatch points the same way,
  about 1/M when they are noise around a mean of 0. Adam's step on a sequence of gradients
  shrinks with it (its first moment averages the v_i, its second their squares);
- cos(g_tilde, g): between the minibatch means of g_tilde and of g (the full batch's g);
- |g_tilde| / |g|: the same means' norms;
- KL reached: the mean per-state KL to the perturbed policy (the metric shapo_kl).

Prints a Markdown table; --out writes it as JSON records too, and

    .venv/bin/python study/shapo_gradient_noise.py summarize --summarize OUT.json...

tabulates such files (one minibatch size and SHAPO radius each, with --epochs), one row per
file and their mean with a 95% interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from shapo_jax.io import atomic_write_text
from shapo_jax.policy import gaussian_kl
from shapo_jax.training.devices import env_pieces
from shapo_jax.training.evaluation import restore_member, select_run
from shapo_jax.update.learner import UpdateBatch, minibatches
from shapo_jax.update.ppo import make_ppo_update, ppo_objective, ppo_policy_gradient
from shapo_jax.update.settings import ShapoSettings, UpdateHyperparameters


def next_batch(restored):
    """The batch (and SHAPO radius) the member's next update would learn from: the trainer's
    own update with its learner swapped for one that hands the batch back."""
    fields = [f.name for f in dataclasses.fields(UpdateBatch)]

    def hand_back(learner, batch, key, hp):  # metrics are arrays: the batch field by field
        return learner, {"radius": hp.shapo_radius,
                         **{f"batch.{name}": getattr(batch, name) for name in fields}}

    config = restored.selection.config
    pieces = env_pieces(config.num_envs, 1, 1, restored.lapack_limit)  # as the run stepped them
    trainer = dataclasses.replace(restored.trainer, policy_update=hand_back, env_pieces=pieces)
    _, metrics = jax.jit(trainer.update)(restored.state)
    return (UpdateBatch(**{name: metrics[f"batch.{name}"] for name in fields}),
            float(metrics["radius"]))


def shapo_settings(config, fisher_fraction: float) -> ShapoSettings:
    """The run's SHAPO solve (its CG iterations and damping) with `fisher_fraction`."""
    return ShapoSettings(cg_iters=config.shapo_cg_iters, cg_damping=config.shapo_cg_damping,
                         fisher_fraction=fisher_fraction)


def minibatch_gradients(restored, batch, num_minibatches: int, radius: float,
                        fisher_fraction: float, key: jax.Array) -> dict[str, np.ndarray]:
    """g and g_tilde (flattened) and the KL reached, for each of the batch's minibatches: the
    learner's own minibatch gradient (`ppo_policy_gradient`) at the checkpoint's theta."""
    config, networks = restored.selection.config, restored.trainer.networks
    params = restored.state.learner.actor_params
    ppo, shapo = config.ppo_settings(), shapo_settings(config, fisher_fraction)

    def one(minibatch):
        step = ppo_policy_gradient(networks, params, minibatch, ppo, shapo, jnp.float32(radius))
        return (ravel_pytree(step.grad)[0], ravel_pytree(step.ascent)[0],
                step.metrics["shapo_kl"])

    grads, ascents, kls = jax.jit(lambda b: jax.lax.map(one, b))(
        minibatches(batch, key, num_minibatches))
    return {"g": np.asarray(grads, np.float64), "g_tilde": np.asarray(ascents, np.float64),
            "kl": np.asarray(kls, np.float64)}


def epochs_from_checkpoint(restored, batch, num_minibatches: int, radius: float,
                           fisher_fraction: float, epochs: int, key: jax.Array
                           ) -> dict[str, np.ndarray]:
    """The run's own PPO learner stepped for `epochs` epochs from the checkpoint's learner on
    `batch` (no KL stop), at SHAPO radius `radius` (0: PPO-Lag's step, bit for bit): after
    each epoch, the mean KL(pi_old || pi_theta) over the batch and the gain of PPO's
    surrogate L(theta) - L(theta_old) on the whole batch."""
    config, networks = restored.selection.config, restored.trainer.networks
    ppo = dataclasses.replace(config.ppo_settings(), update_epochs=1, target_kl=None,
                              num_minibatches=num_minibatches)
    shapo = shapo_settings(config, fisher_fraction)
    update = make_ppo_update(networks, restored.trainer.optimizer, ppo=ppo, shapo=shapo,
                             critic=config.critic_settings())
    hp = UpdateHyperparameters(shapo_radius=jnp.float32(radius),
                               critic_radius=jnp.float32(config.rho_critic if radius else 0.0))
    learner = restored.state.learner
    old_mean, old_log_std = networks.actor.apply(learner.actor_params, batch.obs)

    def surrogate(params):
        return ppo_objective(params, networks, batch, config.clip, config.entropy_coef)[0]

    def one_epoch(learner, epoch_key):
        learner, _ = update(learner, batch, epoch_key, hp)
        mean, log_std = networks.actor.apply(learner.actor_params, batch.obs)
        kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
        return learner, (kl, surrogate(learner.actor_params))

    start = surrogate(learner.actor_params)
    _, (kls, values) = jax.jit(lambda l, k: jax.lax.scan(one_epoch, l, k))(
        learner, jax.random.split(key, epochs))
    return {"kl": np.asarray(kls, np.float64), "gain": np.asarray(values - start, np.float64)}


def signal_fraction(vectors: np.ndarray) -> float:
    """||mean v_i||^2 / mean ||v_i||^2 over the rows v_i."""
    return float(np.sum(vectors.mean(0) ** 2) / np.mean(np.sum(vectors ** 2, axis=1)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def summarize(paths: list[str]) -> str:
    """One row per output file (--out) of a run at one minibatch size, Fisher fraction and
    SHAPO radius, with --epochs of at least 10: the SHAPO setting's KL reached, both
    gradients' signal, their cosine, and the surrogate gain after 10 epochs and after the
    last of PPO-Lag's and of SHAPO's step; then the mean over the files with a 95% Student t
    interval."""
    from scipy import stats

    rows, epochs = [], set()
    for path in paths:
        result = json.loads(Path(path).read_text())
        shapo = [r for r in result["records"] if r["radius"] > 0]
        if len(shapo) != 1 or len(result.get("epochs", [])) != 2:
            raise SystemExit(f"{path}: summarize takes runs of one SHAPO radius, one minibatch "
                             "size and one Fisher fraction, with --epochs (radii 0 and one "
                             f"more); this one has {len(shapo)} SHAPO record(s) and "
                             f"{len(result.get('epochs', []))} epoch run(s)")
        (shapo,) = shapo
        plain_run, shapo_run = (next(e for e in result["epochs"] if (e["radius"] > 0) == on)
                                for on in (False, True))
        if (shapo_run["radius"], shapo_run["minibatch"], shapo_run["fisher_fraction"]) != (
                shapo["radius"], shapo["minibatch"], shapo["fisher_fraction"]) or \
                plain_run["minibatch"] != shapo["minibatch"]:
            raise SystemExit(f"{path}: its epoch runs are not of its gradient record's setting")
        epochs.add(len(plain_run["gain"]))
        if len(epochs) > 1 or min(epochs) < 10:
            raise SystemExit(f"{path}: the files must share one --epochs of at least 10, "
                             f"got {sorted(epochs)}")
        rows.append([shapo["kl"], shapo["signal_g"], shapo["signal_g_tilde"], shapo["cosine"],
                     plain_run["gain"][9], shapo_run["gain"][9], plain_run["gain"][-1],
                     shapo_run["gain"][-1], plain_run["gain"][-1] - shapo_run["gain"][-1]])
        rows[-1].insert(0, f"seed {result['seed']}, update {result['checkpoint']}")
    last = epochs.pop() if epochs else 0
    header = ("| member | KL reached | signal, g | signal, g_tilde | cos(g_tilde, g) | gain "
              f"after 10 epochs, PPO-Lag | SHAPO | gain after {last} epochs, PPO-Lag | SHAPO | "
              f"PPO-Lag - SHAPO after {last} |")
    lines = [header, "|---|" + "---:|" * 9]
    for row in rows:
        lines.append(f"| {row[0]} | " + " | ".join(f"{v:.4g}" for v in row[1:]) + " |")
    values = np.array([row[1:] for row in rows], np.float64)
    if len(values) > 1:
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(0, ddof=1) / np.sqrt(len(values))
        lines.append("| mean [95% CI] | " + " | ".join(
            f"{m:.4g} [{m - h:.4g}, {m + h:.4g}]" for m, h in zip(values.mean(0), half,
                                                                   strict=True)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a SHAPO-PPO-Lag run directory, or 'summarize' to "
                        "tabulate the --out files given with --summarize")
    parser.add_argument("--summarize", nargs="+", default=[], metavar="JSON")
    parser.add_argument("--checkpoint", type=int)
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--minibatches", type=int, nargs="+", default=[320, 8])
    parser.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.001, 0.005, 0.02])
    parser.add_argument("--fisher-fractions", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--seed", type=int, default=0, help="the minibatches' shuffle")
    parser.add_argument("--epochs", type=int, default=0,
                        help="also step the learner this many epochs from the checkpoint")
    parser.add_argument("--skip-gradients", action="store_true",
                        help="only the epochs (with --epochs)")
    parser.add_argument("--out", help="also write the records as JSON here")
    args = parser.parse_args()
    if args.run_dir == "summarize":
        print(summarize(args.summarize))
        return
    selection = select_run(args.run_dir, args.checkpoint, args.member)
    config = selection.config
    if config.uses_trpo:
        raise SystemExit(f"{args.run_dir}: a TRPO run ({config.algo}); this looks at PPO's "
                         "minibatches")
    for count in args.minibatches:
        if count < 1 or config.batch_size % count:
            raise SystemExit(f"--minibatches {count}: must divide the batch of "
                             f"{config.batch_size} samples")
    restored = restore_member(selection)
    batch, run_radius = next_batch(restored)
    key = jax.random.PRNGKey(args.seed)
    records = []
    print(f"{selection.directory} checkpoint {selection.step} (update {selection.step}), "
          f"seed {selection.seed}: a batch of {config.batch_size} samples; the run's radius "
          f"{run_radius:g}, Fisher fraction {config.fisher_fraction:g}")
    print("| minibatch | radius | Fisher fraction | KL reached | signal, g | signal, g_tilde "
          "| cos(g_tilde, g) | \\|g_tilde\\| / \\|g\\| |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in [] if args.skip_gradients else args.minibatches:
        for fraction in args.fisher_fractions:
            for radius in args.radii:
                grads = minibatch_gradients(restored, batch, count, radius, fraction, key)
                mean_g, mean_tilde = grads["g"].mean(0), grads["g_tilde"].mean(0)
                record = {"minibatch": config.batch_size // count, "radius": radius,
                          "fisher_fraction": fraction, "kl": float(grads["kl"].mean()),
                          "signal_g": signal_fraction(grads["g"]),
                          "signal_g_tilde": signal_fraction(grads["g_tilde"]),
                          "cosine": cosine(mean_tilde, mean_g),
                          "norm_ratio": float(np.linalg.norm(mean_tilde)
                                              / np.linalg.norm(mean_g))}
                records.append(record)
                print(f"| {record['minibatch']} | {radius:g} | {fraction:g} | {record['kl']:.4g} "
                      f"| {record['signal_g']:.3g} | {record['signal_g_tilde']:.3g} "
                      f"| {record['cosine']:.3f} | {record['norm_ratio']:.3g} |", flush=True)
    epochs = []
    if args.epochs:
        shown = sorted({1, 2, 5, 10, 20, 40, args.epochs} & set(range(1, args.epochs + 1)))
        print(f"\nThe learner stepped {args.epochs} epochs from the checkpoint on this batch "
              "(no KL stop): mean KL from pi_old / surrogate gain after epoch "
              + ", ".join(map(str, shown)))
        print("| minibatch | radius | Fisher fraction | " + " | ".join(
            f"epoch {k}" for k in shown) + " |")
        print("|---:|---:|---:|" + "---|" * len(shown))
        for count in args.minibatches:
            for fraction in args.fisher_fractions:
                for radius in args.radii:
                    if radius == 0 and fraction != args.fisher_fractions[0]:
                        continue  # PPO-Lag's step has no Fisher
                    run = epochs_from_checkpoint(restored, batch, count, radius, fraction,
                                                 args.epochs, key)
                    epochs.append({"minibatch": config.batch_size // count, "radius": radius,
                                   "fisher_fraction": fraction, "kl": run["kl"].tolist(),
                                   "gain": run["gain"].tolist()})
                    print(f"| {config.batch_size // count} | {radius:g} | "
                          f"{fraction if radius else '-'} | " + " | ".join(
                              f"{run['kl'][k - 1]:.4f} / {run['gain'][k - 1]:.4f}"
                              for k in shown) + " |", flush=True)
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(
            {"run": str(selection.directory), "checkpoint": selection.step,
             "seed": selection.seed, "records": records, "epochs": epochs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
