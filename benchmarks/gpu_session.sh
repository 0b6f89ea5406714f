#!/bin/bash
# One GPU session for issue 19 point 5: the jax engine measured on an NVIDIA GPU, then the
# 2 × 1500 loop network (examples/mnist_loop2x1500.toml) trained on MNIST, time-boxed.
# Results: docs/benchmarks.md, "GPU".
#
# Run from a folder that holds G (default ./.gpu) with hebbsim/, benchmarks/, examples/, data/mnist/
# and, optionally, whl/ (wheels of the packages the machine lacks; installed into /tmp/site):
#   OUT=/tmp/out BUDGET_S=505 SEEDS=1 bash .gpu/benchmarks/gpu_session.sh 2>&1 | tee /tmp/out/log.txt
# Stages (each under its own time limit, so one failure does not stop the next):
#   1. bench_jax_engine.py, case (c), batch 256, full epoch (GPU utilisation sampled by NVML;
#      nvidia-smi also logs utilisation and memory every 200 ms to $OUT/smi.csv throughout)
#   2. jax_scan_floor.py: the same batch update driven by a fori_loop (per-batch and per-epoch
#      jit), JAX's default matmul precision, and the epoch driver at "highest" precision (no TF32)
#   3. bench_jax_engine.py at batch 20 (the training run's batch), 300 batches extrapolated
#   4. the training run(s), one process per seed (side by side on the GPU), stopped by `timeout`
#      when BUDGET_S is nearly spent: the run file holds every completed epoch (appended
#      atomically), the checkpoint beside it the last one (continue with `hebbsim run --resume`)
# The run files and checkpoints are copied to $OUT (at most MAX_OUT_MB together).
set -u -o pipefail
G=${G:-$PWD/.gpu}
OUT=${OUT:-/tmp/gpu_session_out}
BUDGET_S=${BUDGET_S:-510}
# one seed by default: two training processes sharing the GPU (no MPS) ran at 130 s per epoch
# each, against 28-30 s for one alone (2026-11-27, H100): 2.2x less work done in all
SEEDS=${SEEDS:-1}
MAX_OUT_MB=${MAX_OUT_MB:-58}
RUNS=${RUNS:-/tmp/runs}
PY=${PY:-python3}
# tiny smoke test on a CPU: SMOKE=1 (1 timed batch per benchmark, 200 training samples);
# WHEELS=0 skips the wheel install (where the packages are already there)
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$RUNS"
G=$(cd "$G" && pwd)
# from inside G: `python -c`/`-m` put the working folder first on sys.path, and a hebbsim/ in
# the folder the script was started from (a checkout's) must not shadow G's
cd "$G" || exit 1
START=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
stage() { echo "== $(date -u +%H:%M:%S) [t+$(($(date +%s) - START)) s] $*"; }

stage "setup (G=$G)"
if [ "${WHEELS:-1}" = 1 ] && compgen -G "$G/whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$G
else
    export PYTHONPATH=$G
fi
export HEBBSIM_DATA=$G/data PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
# fail fast (before anything long) on a missing package or a bad parameter file
$PY -c "
import jax, hebbsim, pydantic, h5netcdf, diffrax, equinox
from hebbsim.data.params import load_params
load_params('$G/examples/mnist_loop2x1500.toml')
print('python', __import__('sys').version.split()[0], '| jax', jax.__version__, jax.devices(),
      '| diffrax', diffrax.__version__, '| equinox', equinox.__version__, '| hebbsim from', hebbsim.__file__)
" || { echo "setup check failed"; exit 1; }

SMI=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,nounits -lms 200 >"$OUT/smi.csv" 2>&1 &
    SMI=$!
fi

if [ "$SMOKE" = 1 ]; then B256="--batches 1"; B20="--batches 1"; FLOOR="--batches 1"; else
    B256="--batches 0 --report-every 25"; B20="--batches 300 --report-every 100"; FLOOR="--batches 0"; fi

stage "1. bench_jax_engine.py case (c), batch 256: $B256"
timeout 150 $PY "$G/benchmarks/bench_jax_engine.py" $B256
stage "2. jax_scan_floor.py (batch and epoch drivers, default precision): $FLOOR"
timeout 100 $PY "$G/benchmarks/jax_scan_floor.py" $FLOOR
stage "2b. jax_scan_floor.py, epoch driver, precision highest"
timeout 60 $PY "$G/benchmarks/jax_scan_floor.py" $FLOOR --driver epoch --precision highest
stage "3. bench_jax_engine.py, batch 20: $B20"
timeout 60 $PY "$G/benchmarks/bench_jax_engine.py" --batch-size 20 $B20

T=$(($(left) - 45))
stage "4. training examples/mnist_loop2x1500.toml, seeds $SEEDS, time box $T s"
EXTRA=()
[ "$SMOKE" = 1 ] && EXTRA=(--set data.train_subset=200 --set data.test_subset=100 --set learning.epochs=1)
if [ "$T" -gt 60 ]; then
    export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU
    PIDS=()
    for s in $SEEDS; do
        # learning.epochs is a ceiling here: `timeout` ends the run (constant rates: the
        # schedule does not depend on it)
        (timeout -s TERM "$T" $PY -m hebbsim.simulate.cli run "$G/examples/mnist_loop2x1500.toml" --no-progress \
            --set 'dynamics.engine="jax"' --set learning.epochs=200 --set learning.seed="$s" --set record.path="\"$RUNS/loop2x1500_s$s.h5\"" \
            "${EXTRA[@]}" 2>&1 | sed -u "s/^/[seed $s] /") &
        PIDS+=($!)
    done
    wait "${PIDS[@]}"
else
    echo "no time left for training"
fi

stage "5. results"
$PY - "$RUNS" <<'EOF'
import glob, json, sys
import hebbsim
for path in sorted(glob.glob(sys.argv[1] + "/*.h5")):
    try:
        ds = hebbsim.open_run(path)
        print(json.dumps({"run": path, "epochs": int(ds.sizes["epoch"]),
                          "test_error": [round(float(v), 5) for v in ds["test_error"].values],
                          "train_error": [round(float(v), 5) for v in ds["train_error"].values],
                          "epoch_time": [round(float(v), 2) for v in ds["epoch_time"].values]}))
    except Exception as e:  # report, go on with the others
        print(json.dumps({"run": path, "error": repr(e)}))
EOF
[ -n "$SMI" ] && kill "$SMI"
# at most 6 files back besides log.txt and smi.csv, each < 16 MiB: a run file over that in pieces
# (join them with `cat f.part* > f`)
total=0 files=0
for f in "$RUNS"/*.h5 "$RUNS"/*.ckpt.npz; do
    [ -f "$f" ] || continue
    mb=$(( $(stat -c %s "$f") / 1048576 + 1 ))
    pieces=$(( (mb + 14) / 15 ))
    if [ $((total + mb)) -gt "$MAX_OUT_MB" ] || [ $((files + pieces)) -gt 6 ]; then
        echo "not returned: $(basename "$f") (${mb} MiB)"
    elif [ "$pieces" -eq 1 ]; then
        cp "$f" "$OUT/" && total=$((total + mb)) files=$((files + 1)) && echo "returned $(basename "$f") (${mb} MiB)"
    else
        split -b 15M -d "$f" "$OUT/$(basename "$f").part" && total=$((total + mb)) files=$((files + pieces)) \
            && echo "returned $(basename "$f") (${mb} MiB) in $pieces pieces"
    fi
done
stage done
