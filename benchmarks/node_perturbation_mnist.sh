#!/usr/bin/env bash
# Seed 003's MNIST comparison under one protocol (examples/mnist_node_perturbation.toml:
# 784-50-20-10 sigmoid, rate_mse, batch 32, SGD, the discrete reference engine): node
# perturbation, feedback alignment (the same file, feedback_lr = 0) and backprop (the same file
# without its node-perturbation table and noise, rule = "bp"). One run after the other, each with
# its own learning rate (chosen on data.validation = 10000, docs/benchmarks.md). Run from the
# repository root:
#   HEBBSIM_DATA=../shared/data bash benchmarks/node_perturbation_mnist.sh [OUT_DIR] [--set ... for all]
# Environment: NP_LR, FA_LR, BP_LR (defaults: the rates chosen on validation), RULES (default
# "np fa bp").
set -euo pipefail
out=${1:-runs/node_perturbation_mnist}
shift || true
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1
bp=$(mktemp --suffix=.toml)
trap 'rm -f "$bp"' EXIT
sed '/^node_perturbation = /d; /^noise = /d; s/rule = "node_perturbation"/rule = "bp"/' \
    examples/mnist_node_perturbation.toml > "$bp"
run() {  # name, file, learning rate, then --set arguments
    local name=$1 file=$2 lr=$3; shift 3
    local start=$SECONDS
    python -m hebbsim.simulate.cli run "$file" -q --set learning.lr="$lr" \
        --set record.path="\"$out/$name.h5\"" "$@"
    echo "$name: $((SECONDS - start)) s wall"
}
for rule in ${RULES:-np fa bp}; do
    case $rule in
        np) run np examples/mnist_node_perturbation.toml "${NP_LR:-2.0}" "$@" ;;
        fa) run fa examples/mnist_node_perturbation.toml "${FA_LR:-8.0}" \
                --set learning.node_perturbation.feedback_lr=0.0 "$@" ;;
        bp) run bp "$bp" "${BP_LR:-2.0}" "$@" ;;
        *) echo "unknown rule $rule (np, fa, bp)" >&2; exit 2 ;;
    esac
done
