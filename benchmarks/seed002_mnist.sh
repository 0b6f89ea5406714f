#!/usr/bin/env bash
# Seed 002's MNIST protocol for every rule of the feedback-alignment family, as discrete references
# on the reference engine (docs/benchmarks.md, "Discrete references (seed 002 protocol)"):
# 784-800-800-10 tanh, linear output + softmax cross-entropy, SGD lr 0.001 per sample (summed over
# batches of 10), Xavier init, feedback B ~ U(-1/2, 1/2), 100 epochs,
# the batch size chosen on a validation split — all in examples/mnist_seed002_bp.toml; each rule
# brings its own feedback topology and matrices.
#
#   HEBBSIM_DATA=../shared/data benchmarks/seed002_mnist.sh                  # every rule, one after another
#   ONLY="dfa fa_strategy_s1_aux" benchmarks/seed002_mnist.sh                 # some of them
#   JOBS=4 benchmarks/seed002_mnist.sh --set learning.epochs=10               # 4 at a time, extra overrides
#   OUT=runs/seed002_seed2 benchmarks/seed002_mnist.sh --set learning.seed=2  # another seed
#
# Every run is started with --resume: a run file that holds all its epochs is left alone, an
# interrupted one continues from its checkpoint, a missing one starts at epoch 1 — so the script
# can simply be launched again. Logs: $OUT/<label>.log; results: $OUT/<label>.h5 (hebbsim report).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/seed002}
JOBS=${JOBS:-1}
HEBBSIM=${HEBBSIM:-python -m hebbsim.simulate.cli}
PARAMS=examples/mnist_seed002_bp.toml
# one thread per process, BLAS and XLA alike: JOBS runs share the cores
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export XLA_FLAGS=${XLA_FLAGS:-"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

# label | the overrides that make the rule (names fixed by issue 11)
RUNS=(
  "bp|learning.rule=bp"
  "fa|learning.rule=fa"
  "dfa|learning.rule=dfa"
  "drtp|learning.rule=drtp"
)
for s in s1 s2 s3; do
  RUNS+=("fa_strategy_${s}|learning.rule=fa_strategy learning.fa_strategy.strategy=${s} learning.fa_strategy.auxiliary=false")
  RUNS+=("fa_strategy_${s}_aux|learning.rule=fa_strategy learning.fa_strategy.strategy=${s} learning.fa_strategy.auxiliary=true")
done

mkdir -p "$OUT"
run_one() {  # label, overrides…, then the script's own arguments
  local label=$1 sets=$2; shift 2
  local args=()
  for s in $sets; do args+=(--set "$s"); done
  echo "$(date -u +%FT%TZ) start $label" >&2
  if nice -n 10 $HEBBSIM run "$PARAMS" "${args[@]}" --set "dynamics.engine=\"reference\"" \
       --set "record.path=\"$OUT/$label.h5\"" --resume --no-progress "$@" >"$OUT/$label.log" 2>&1; then
    echo "$(date -u +%FT%TZ) done  $label: $(grep -o 'test error *[0-9.]*%' "$OUT/$label.log" | tail -n 1)" >&2
  else
    echo "$(date -u +%FT%TZ) FAILED $label: $(tail -n 1 "$OUT/$label.log")" >&2
    return 1
  fi
}

status=0
for spec in "${RUNS[@]}"; do
  label=${spec%%|*}
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $label "* ]]; then continue; fi
  while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || status=1; done
  run_one "$label" "${spec#*|}" "$@" &
done
while (( $(jobs -rp | wc -l) > 0 )); do wait -n || status=1; done
exit $status
