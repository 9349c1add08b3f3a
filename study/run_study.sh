#!/bin/bash
# The study behind RESULTS.md, as it was run on the 2-core development CPU (about 1.5 h).
# Each sweep resumes where it stopped when the same command is run again.
set -euxo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/shapo-sweep
$S --algos ppo_lag shapo_ppo_lag trpo_lag shapo_trpo_lag --envs TinyHazardNav --seeds 5 \
   --total-steps 400000 --num-envs 64 --cost-limit 2 --set rollout_length=50 \
   --set log_every_steps=32000 --quiet --out runs/study/TinyHazardNav
for task in SafetyPointGoal1 SafetyAntVelocity SafetyAntFall; do
  $S --algos ppo_lag shapo_ppo_lag --envs $task --seeds 5 --total-steps 160000 --num-envs 64 \
     --set log_every_steps=20480 --quiet --out runs/study/$task
done
$S --algos ppo_lag shapo_ppo_lag --envs SafetyPointButton1 --seeds 5 --total-steps 81920 \
   --num-envs 64 --set log_every_steps=20480 --quiet --out runs/study/SafetyPointButton1
$S --algos shapo_trpo_lag --envs TinyHazardNav --seeds 5 \
   --delta-down 0.0005 0.001 0.002 --total-steps 400000 --num-envs 64 --cost-limit 2 \
   --set rollout_length=50 --set log_every_steps=32000 --quiet --out runs/study/TinyHazardNav
for task in TinyHazardNav SafetyPointGoal1 SafetyAntVelocity SafetyAntFall SafetyPointButton1; do
  .venv/bin/shapo-plot runs/study/$task --out study/figures/$task
done
