#!/usr/bin/env bash
# Seed 001's MNIST comparison under one protocol (examples/mnist_f3.toml: 784-500-10 tanh,
# sigmoid output + one-hot BCE, Adam 1.5e-4, batch 50, 100 epochs, standardized inputs), all on
# the discrete reference engine: F³ (error), DRTP, DFA, BP and last-layer-only (BP with the
# hidden layer frozen), and F³ with two more seeds. Results in docs/benchmarks.md (F³ section).
#   HEBBSIM_DATA=../shared/data bash benchmarks/f3_mnist.sh [EPOCHS] [OUT_DIR]
# Each run resumes where an interrupted one stopped; finished runs are skipped.
set -euo pipefail
epochs=${1:-100}
out=${2:-runs/f3_mnist}
mkdir -p "$out"
# one thread per process, BLAS and XLA alike: the runs share the cores
export OPENBLAS_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run() {  # name, then --set arguments
    local name=$1; shift
    if [ -e "$out/$name.done" ]; then return; fi
    local resume=(); if [ -e "$out/$name.h5" ]; then resume=(--resume); fi
    hebbsim run examples/mnist_f3.toml -q --set learning.epochs="$epochs" --set record.path="\"$out/$name.h5\"" \
        "${resume[@]}" "$@" && touch "$out/$name.done"
}
run f3_error
run drtp --set learning.rule='"drtp"'
run dfa --set learning.rule='"dfa"'
run bp --set learning.rule='"bp"'
run last_layer --set learning.rule='"bp"' --set learning.lr='[0.0, 1.5e-4]'
run f3_error_seed2 --set learning.seed=2
run f3_error_seed3 --set learning.seed=3
