#!/usr/bin/env bash
# Issue 5's sweep, in the order that answers the main question first (HalfCheetah at 1M), then
# CGRPO-Full and PPO on every other task one seed at a time (so a cut-short sweep still covers
# every task), then CGRPO-Simple there; two runs at once (one core each). Resumable: a finished
# run's JSON file is skipped.
#   bash benchmarks/issue5_sweep.sh && .venv/bin/cgrpo bench --report docs
set -euo pipefail
cd "$(dirname "$0")/.."
bench=".venv/bin/cgrpo bench --jobs 2 --out benchmarks/results/compare"
$bench --tasks HalfCheetah-v5 --budget 1000000 --methods cgrpo-full ppo --seeds 0 1 2
$bench --tasks HalfCheetah-v5 --budget 1000000 --methods cgrpo-simple --seeds 0 1 2
for seed in 0 1 2; do
    $bench --tasks Hopper-v5 Walker2d-v5 Ant-v5 --budget 300000 --methods cgrpo-full ppo \
        --seeds "$seed"
done
$bench --tasks Hopper-v5 Walker2d-v5 Ant-v5 --budget 300000 --methods cgrpo-simple \
    --seeds 0 1 2
