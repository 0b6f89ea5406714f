"""The kernels' GEMM: numpy's own BLAS called from compiled code, or numba's ``np.dot``."""

import numpy as np
import pytest

from hebbsim.simulate.engines.numba_blas import dot_into, numpy_blas_path, numpy_gemm
from hebbsim.simulate.engines.numba_engine import NumbaEngine


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")  # the strided case, on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dot_into_is_the_product_for_every_layout_it_takes(dtype):
    gemm = numpy_gemm(dtype)
    if numpy_blas_path() is not None:  # PyPI wheels: numpy's ILP64 OpenBLAS is callable
        assert gemm is not None and gemm.dtype == dtype
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 3)).astype(dtype)
    c = rng.standard_normal((7, 3)).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for g in (gemm, None):
        out = np.full((7, 3), np.nan, dtype)
        dot_into(g, a, b, out)  # C-contiguous a
        np.testing.assert_allclose(out, a @ b, rtol=rtol)
        back = np.full((5, 3), np.nan, dtype)
        dot_into(g, a.T, c, back)  # a transposed view (the eligibility's ρ(s)ᵀU)
        np.testing.assert_allclose(back, a.T @ c, rtol=rtol)
        strided = np.full((4, 3), np.nan, dtype)
        dot_into(g, a[::2], b, strided)  # neither C nor F: np.dot
        np.testing.assert_allclose(strided, a[::2] @ b, rtol=rtol)
        empty = np.full((7, 3), np.nan, dtype)
        dot_into(g, a[:, :0], b[:0], empty)  # k = 0: a zero product, not a GEMM call
        np.testing.assert_array_equal(empty, 0)


def test_the_engine_calls_numpys_blas_unless_told_not_to():
    from hebbsim.dynamics.network import build_network

    net = build_network([4, 3, 2], "symmetric")
    assert NumbaEngine(net, 0.5, np.float32).gemm is numpy_gemm(np.float32)
    assert NumbaEngine(net, 0.5, np.float32, numpy_blas=False).gemm is None
