#!/bin/bash
# Signal propagation on MNIST 784-800-800-10 (seed 000 Table VI) and BP under the same protocol
# (docs/benchmarks.md, "Signal propagation, discrete"). Run from the repository root:
#   HEBBSIM_DATA=../shared/data benchmarks/sigprop_mnist.sh [--set learning.epochs=N ...]
# The BP file is the sigprop file without its [learning.sigprop] table and with rule = "bp".
set -euo pipefail
mkdir -p runs
bp=$(mktemp --suffix=.toml)
trap 'rm -f "$bp"' EXIT
sed '/^\[learning.sigprop\]/,/^target_generator/d; s/rule = "sigprop"/rule = "bp"/; s#runs/mnist_sigprop.h5#runs/mnist_sigprop_bp.h5#' \
    examples/mnist_sigprop.toml > "$bp"
export OPENBLAS_NUM_THREADS=1
nice -n 10 python -m hebbsim.simulate.cli run examples/mnist_sigprop.toml --no-progress "$@" &
nice -n 10 python -m hebbsim.simulate.cli run "$bp" --no-progress "$@" &
wait
