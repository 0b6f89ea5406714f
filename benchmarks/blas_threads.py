"""Case (b) of bench_numba_engine.py (symmetric 784-1500-1500-10, 100+20+20 steps, batch 128)
under three BLAS thread settings, in one process each: the default (numpy's and scipy's
OpenBLAS, 2 threads each; numba's np.dot calls scipy's), numpy's pool limited to 1 thread, and
every pool limited to 1 thread (threadpoolctl). Issue 19 point 4's lead.

    for m in default numpy1 all1; do HEBBSIM_DATA=../shared/data python benchmarks/blas_threads.py $m 3; done
"""
import sys, time, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import numpy as np
from threadpoolctl import ThreadpoolController
import bench_numba_engine as b
from hebbsim.data.datasets import load_dataset
data = load_dataset("mnist")
ctl = ThreadpoolController()
numpy_blas = ctl.select(filepath=[l["filepath"] for l in ctl.info() if "numpy.libs" in l["filepath"]])
cfg = b.config([784, 1500, 1500, 10], 100, 20, 128)
mode = sys.argv[1]
if mode == "numpy1":
    numpy_blas.limit(limits=1)
elif mode == "all1":
    ctl.limit(limits=1, user_api="blas")
for rep in range(2):
    t, n = b.epoch_time(cfg, data, int(sys.argv[2]))
    print(json.dumps({"mode": mode, "s_per_epoch": round(t, 1), "batches": n}), flush=True)
