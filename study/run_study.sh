#!/bin/bash
# The study behind RESULTS.md, as it was run on the 2-core development CPU (part 1: about
# 1.5 h; part 2: about 40 min; part 3: about 30 min).
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
# Part 2: the TRPO pair on the physics tasks (same budgets as the PPO pair; SHAPO-TRPO-Lag at
# delta_down 0.001, a tenth of its trust region, from the tiny-task sweep above) and all four
# learners on SafetyAntFall with a cost limit a fall can bind (0.2 falls per episode). The CPU is
# split into two XLA devices (--cpu-devices 2: about 1.7x on this 2-core machine). The TRPO pair
# on SafetyPointButton1 is not here: its welded gremlins (nv 27) allow only about 30 envs per
# CPU device (BENCHMARKS.md), so it waits for a GPU.
S2="$S --cpu-devices 2"
for task in SafetyPointGoal1 SafetyAntVelocity SafetyAntFall; do
  $S2 --algos trpo_lag shapo_trpo_lag --envs $task --delta-down 0.001 --seeds 5 \
      --total-steps 160000 --num-envs 64 --set log_every_steps=20480 --quiet --out runs/study/$task
done
$S2 --algos ppo_lag shapo_ppo_lag trpo_lag --envs SafetyAntFall --cost-limit 0.2 --seeds 5 \
    --total-steps 160000 --num-envs 64 --set log_every_steps=20480 --quiet \
    --out runs/study/SafetyAntFall-limit0.2
$S2 --algos shapo_trpo_lag --envs SafetyAntFall --cost-limit 0.2 --delta-down 0.001 --seeds 5 \
    --total-steps 160000 --num-envs 64 --set log_every_steps=20480 --quiet \
    --out runs/study/SafetyAntFall-limit0.2
# Part 3: SafetyPointButton1 with its welded gremlins (part 1 ran the earlier kinematic ones),
# all four learners, stepped with MuJoCo's CG solver and a sparse Jacobian: no LAPACK call, so
# 5 seeds x 64 envs fit on 2 CPU devices (Newton allows 30 envs per device), and its
# trajectories follow Newton's (tests/test_envs_navigation.py, BENCHMARKS.md). About 30 min.
B="$S2 --envs SafetyPointButton1 --seeds 5 --total-steps 81920 --num-envs 64 \
   --set log_every_steps=20480 --env-option solver=cg --env-option jacobian=sparse --quiet \
   --out runs/study/SafetyPointButton1-welded"
$B --algos ppo_lag shapo_ppo_lag trpo_lag
$B --algos shapo_trpo_lag --delta-down 0.001
for task in TinyHazardNav SafetyPointGoal1 SafetyAntVelocity SafetyAntFall SafetyPointButton1 \
            SafetyAntFall-limit0.2 SafetyPointButton1-welded; do
  .venv/bin/shapo-plot runs/study/$task --out study/figures/$task
done
