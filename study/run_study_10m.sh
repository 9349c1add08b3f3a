#!/bin/bash
# SafetyPointGoal1 at the field's budget (issue 15; RESULTS.md, "SafetyPointGoal1 at 10M env
# steps"). OmniSafe 0.5's PPOLag/TRPOLag settings (--preset omnisafe; the parts run with its
# first form, before the corrections listed in shapo_jax/training/presets.py, are kept in
# study/runs/SafetyPointGoal1-10M-preset1) with its batch of about
# 20,000 steps per update gathered as 1,024 envs x 20 steps (20,480 steps, 320 minibatches of
# 64 for PPO); 490 updates = 10,035,200 env steps per run; 4 seeds vmapped in one program on
# 2 CPU devices, 2 whole seeds per device (TrainingProgram.shards_members; BENCHMARKS.md).
#
# Each part is one shapo-train run directory under $OUT, kept in git (its config, metrics,
# TensorBoard events and newest checkpoints: about 14 MB) so that a fresh clone goes on where
# the last one stopped. Run this script again to go on: a finished part (its file `done`) is
# skipped, an interrupted one continues from its last checkpoint (one every 10 updates, about
# 4 minutes), so at most 10 updates are repeated. Parts run in the order below; each start and
# end is appended to $OUT/wall_times.log. After each part, its final policies run on our port
# and on the original Safety-Gymnasium (study/crosscheck_10m.py); study/report_10m.py makes the
# figures and tables. Before a sitting ends: stop it, then `bash study/stage_progress.sh`,
# `.venv/bin/python study/report_10m.py` and commit, and leave it stopped: the checkpoints it
# writes after that commit are not in git, so a fresh clone goes on from the committed one.
# Meanwhile study/autosave.sh commits the study's state every hour, so that a sitting cut off
# before it could do so loses at most that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash study/autosave.sh $$ &
OUT=${OUT:-study/runs/SafetyPointGoal1-10M}
TRAIN=.venv/bin/shapo-train
BASE=(--env SafetyPointGoal1 --seeds 4 --num-envs 1024 --set rollout_length=20
      --total-steps 10035200 --set log_every_steps=204800 --set checkpoint_every=1)
COMMON=("${BASE[@]}" --preset omnisafe)

part() {  # part NAME shapo-train-options...
  local dir=$OUT/$1
  shift
  mkdir -p "$OUT"
  if [ -f "$dir/done" ]; then
    echo "$dir: done"
  else
    echo "$(date -u +%FT%TZ) start $dir" | tee -a "$OUT/wall_times.log"
    if ls "$dir"/checkpoints/[0-9]* > /dev/null 2>&1; then
      $TRAIN --resume "$dir" --cpu-devices 2 --no-plot
    else  # new, or stopped before its first checkpoint: start (again) from scratch
      rm -rf "$dir"
      $TRAIN "${COMMON[@]}" "$@" --cpu-devices 2 --no-plot --out "$dir"
    fi
    date -u +%FT%TZ > "$dir/done.tmp" && mv "$dir/done.tmp" "$dir/done"
    echo "$(date -u +%FT%TZ) end $dir" | tee -a "$OUT/wall_times.log"
  fi
  # the finished parts' policies not yet checked, on the original Safety-Gymnasium (a second
  # venv, set up once); a failure here is reported and the training goes on
  { make -s crosscheck-setup && .venv/bin/python study/crosscheck_10m.py "$OUT"; } \
    || echo "$(date -u +%FT%TZ) cross-check of $OUT failed; run study/crosscheck_10m.py again" >&2
}

PRESET_OUT=$OUT
DEFAULTS_OUT=${OUT_DEFAULTS:-study/runs/SafetyPointGoal1-10M-defaults}
# Our batched defaults (TrainConfig: 4 epochs of 8 minibatches, constant learning rate, no KL
# stop, one clip over both critics) at the same batch of 1,024 envs x 20 steps: a study of its
# own, since the figures and tables take a setting to be (algorithm, radius, ...) and
# plot_sweep refuses to pool these runs' seeds with the preset's.
in_preset_study() { OUT=$PRESET_OUT; COMMON=("${BASE[@]}" --preset omnisafe); }
in_defaults_study() { OUT=$DEFAULTS_OUT; COMMON=("${BASE[@]}"); }

in_preset_study
part ppo_lag --algo ppo_lag
part trpo_lag --algo trpo_lag
part shapo_ppo_lag-d0.005 --algo shapo_ppo_lag --delta-down 0.005
# At the preset's 64-sample minibatches SHAPO's epsilon follows each minibatch's noise
# (RESULTS.md, "SHAPO-PPO-Lag's step at OmniSafe's 64-sample minibatches"), so the next parts
# are SHAPO-PPO-Lag at the defaults' 2,560-sample minibatches, next to PPO-Lag there, with the
# Fisher on every state of a minibatch (fisher_fraction 1: the radius then bounds the KL it
# names, docs/algorithms.md §5), before the preset's other SHAPO parts.
in_defaults_study
part ppo_lag --algo ppo_lag
part shapo_ppo_lag-d0.005 --algo shapo_ppo_lag --delta-down 0.005 --set fisher_fraction=1
# At 0.005 the perturbation lowers a minibatch's surrogate by about 0.02, where PPO-Lag's
# surrogate averages 0.0035 over an update, and the policy moves about half as far per update
# as PPO-Lag's (RESULTS.md): the radius is bracketed from below first, then from above.
part shapo_ppo_lag-d0.001 --algo shapo_ppo_lag --delta-down 0.001 --set fisher_fraction=1
part shapo_ppo_lag-d0.02 --algo shapo_ppo_lag --delta-down 0.02 --set fisher_fraction=1
in_preset_study
# a tenth of the trust region: OmniSafe's 0.01 per action dimension is 0.02 in the summed KL
# that delta_down measures, on the Point's 2 actions
part shapo_trpo_lag-d0.002 --algo shapo_trpo_lag --delta-down 0.002
in_defaults_study
part trpo_lag --algo trpo_lag
in_preset_study
part shapo_ppo_lag-d0.02 --algo shapo_ppo_lag --delta-down 0.02
.venv/bin/python study/report_10m.py "$PRESET_OUT"
.venv/bin/python study/report_10m.py "$DEFAULTS_OUT"
