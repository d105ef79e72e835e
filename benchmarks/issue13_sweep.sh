#!/usr/bin/env bash
# Issue 13's sweep in two lanes of one core each, in the order that answers the main question
# first (seed 0 of every task at 1M), then the ablation, then more seeds. Resumable: a finished
# run's JSON file is skipped; a run cut short starts again from scratch.
#   bash benchmarks/issue13_sweep.sh cgrpo &  bash benchmarks/issue13_sweep.sh baselines &
#   bash benchmarks/issue13_sweep.sh ant        # after those (Ant-v5 at 1M, ~25-60 min a run)
#   .venv/bin/cgrpo bench --report docs
set -euo pipefail
cd "$(dirname "$0")/.."
bench=".venv/bin/cgrpo bench --jobs 1 --out benchmarks/results/compare"
tasks=(HalfCheetah-v5 Hopper-v5 Walker2d-v5)
case "${1:-}" in
cgrpo)
    # The value baseline at init_log_std -1 (config/cgrpo/value_midnoise.yaml): the strongest
    # CGRPO row (it learns Hopper, where -2 stalls), first.
    $bench --tasks Hopper-v5 Walker2d-v5 HalfCheetah-v5 --budget 1000000 \
        --methods cgrpo-value-midnoise --seeds 0
    $bench --tasks Walker2d-v5 Hopper-v5 HalfCheetah-v5 --budget 1000000 \
        --methods cgrpo-value-midnoise --seeds 1 2
    # The learned value baseline at init_log_std -2 (config/cgrpo/value.yaml).
    $bench --tasks Walker2d-v5 HalfCheetah-v5 Hopper-v5 --budget 1000000 --methods cgrpo-value \
        --seeds 0
    $bench --tasks Walker2d-v5 HalfCheetah-v5 Hopper-v5 --budget 1000000 --methods cgrpo-value \
        --seeds 1 2
    for task in "${tasks[@]}"; do
        $bench --tasks "$task" --budget 1000000 --methods cgrpo-lownoise --seeds 0
    done
    # The paper's Full at 1M where issue 5 stopped at 300k (low noise stalls on Hopper).
    $bench --tasks Hopper-v5 Walker2d-v5 --budget 1000000 --methods cgrpo-full --seeds 0
    $bench --tasks HalfCheetah-v5 --budget 1000000 --methods cgrpo-group --seeds 0
    # Term-by-term ablation of Full at 300k on HalfCheetah.
    $bench --tasks HalfCheetah-v5 --budget 300000 --seeds 0 --methods cgrpo-full \
        cgrpo-full-no-adaptive-clip cgrpo-full-no-smoothness cgrpo-full-no-diversity \
        cgrpo-full-no-reference
    for seed in 1 2; do
        $bench --tasks Hopper-v5 Walker2d-v5 --budget 1000000 --methods cgrpo-full --seeds "$seed"
    done
    $bench --tasks Hopper-v5 Walker2d-v5 --budget 1000000 --methods cgrpo-group --seeds 0
    for seed in 1 2; do
        $bench --tasks "${tasks[@]}" --budget 1000000 --methods cgrpo-lownoise --seeds "$seed"
    done
    $bench --tasks "${tasks[@]}" --budget 1000000 --methods cgrpo-group --seeds 1 2
    ;;
baselines)
    $bench --tasks "${tasks[@]}" --budget 1000000 --methods ppo-tuned --seeds 0
    # Hopper's seed 0 learned to stand (1,009): a second seed before anything else.
    $bench --tasks Hopper-v5 --budget 1000000 --methods ppo-tuned --seeds 1
    $bench --tasks Hopper-v5 HalfCheetah-v5 Walker2d-v5 --budget 1000000 --methods trpo --seeds 0
    $bench --tasks "${tasks[@]}" --budget 1000000 --methods ppo-tuned --seeds 1 2
    $bench --tasks Hopper-v5 Walker2d-v5 --budget 1000000 --methods ppo --seeds 0 1 2
    $bench --tasks "${tasks[@]}" --budget 1000000 --methods trpo --seeds 1 2
    ;;
ant)
    # "Ant-v5 at 1M where time allows": the best CGRPO row against the tuned baselines.
    $bench --tasks Ant-v5 --budget 1000000 --methods cgrpo-value-midnoise ppo-tuned --seeds 0
    $bench --tasks Ant-v5 --budget 1000000 --methods trpo cgrpo-full --seeds 0
    $bench --tasks Ant-v5 --budget 1000000 --methods cgrpo-value-midnoise ppo-tuned --seeds 1 2
    ;;
*)
    echo "usage: $0 cgrpo|baselines|ant   (one lane per core)" >&2
    exit 2
    ;;
esac
