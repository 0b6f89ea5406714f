#!/bin/bash
# Signal propagation on MNIST 784-800-800-10 (seed 000 Table VI) and its comparison points under
# the same protocol — BP, FA, DFA: the same file without its [learning.sigprop] table, with
# rule = X and the softmax cross-entropy on the logits that sigprop's classifier uses
# (docs/benchmarks.md, "Signal propagation, discrete"). Run from the repository root:
#   HEBBSIM_DATA=../shared/data benchmarks/sigprop_mnist.sh OUT_DIR [--set learning.epochs=N ...]
#   RULES="sigprop bp" JOBS=1 HEBBSIM_DATA=../shared/data benchmarks/sigprop_mnist.sh OUT_DIR
# RULES (default "sigprop bp fa dfa") run JOBS (default 2) at a time; a run resumes where an
# interrupted one stopped and a finished one (OUT_DIR/RULE.done) is skipped.
set -euo pipefail
out=${1:?usage: benchmarks/sigprop_mnist.sh OUT_DIR [--set ...]}
shift
mkdir -p "$out"
others=$(mktemp --suffix=.toml)
trap 'rm -f "$others"' EXIT
sed '/^\[learning.sigprop\]/,/^target_generator/d' examples/mnist_sigprop.toml > "$others"
# one thread per process, BLAS and XLA alike: the runs share the cores
export OPENBLAS_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run() {  # rule, then the script's own arguments
    local rule=$1; shift
    [ -e "$out/$rule.done" ] && return 0
    local file=$others sets=(--set "learning.rule=\"$rule\"" --set 'learning.cost="softmax_cross_entropy"')
    if [ "$rule" = sigprop ]; then file=examples/mnist_sigprop.toml; sets=(); fi
    local resume=(); [ -e "$out/$rule.h5" ] && resume=(--resume)
    nice -n 10 python -m hebbsim.simulate.cli run "$file" --no-progress "${sets[@]}" \
        --set "record.path=\"$out/$rule.h5\"" "${resume[@]}" "$@" > "$out/$rule.log" 2>&1 && touch "$out/$rule.done"
}
jobs_max=${JOBS:-2}
for rule in ${RULES:-sigprop bp fa dfa}; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    run "$rule" "$@" &
done
wait
