"""The GEMM of the numba kernels: numpy's own BLAS, called from compiled code.

numba lowers ``np.dot`` to the BLAS that scipy ships (``scipy.linalg.cython_blas``). With the
PyPI wheels that is a second OpenBLAS beside numpy's, with its own thread pool, and on the
kernels' products — two alternating weight matrices, ``(batch, n_src) · (n_src, n_dst)`` — it
ran at 165–177 GFLOP/s where numpy's reached 258–264 on the same machine and sequence
(docs/benchmarks.md, BLAS threads). So the kernels call numpy's ``cblas_?gemm`` directly: the
process then does all its products in one library and one thread pool
(:mod:`hebbsim.simulate.engines.blas_pools`).

:func:`numpy_gemm` finds it (numpy ≥ 2 wheels bundle an ILP64 OpenBLAS whose CBLAS symbols are
``scipy_cblas_sgemm64_`` / ``scipy_cblas_dgemm64_``) and wraps its address as a numba
first-class function, passed to the kernels as an argument — so the compiled kernels stay
cacheable on disk (the address is data, not a constant of the machine code). Where numpy's
BLAS is another one (conda's MKL, a system library), :func:`numpy_gemm` returns ``None`` and
:func:`dot_into` is ``np.dot``: the kernels then run as they did before.
"""

from __future__ import annotations

import ctypes
import functools

import numba.experimental.function_type  # noqa: F401  (registers typeof for WrapperAddressProtocol)
import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

# CBLAS enums (cblas.h): row-major storage, no transpose, transpose
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# the ILP64 CBLAS symbols of the OpenBLAS that numpy's wheels bundle, by element type
_SYMBOLS = {np.dtype(np.float32): ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
            np.dtype(np.float64): ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


def numpy_blas_path() -> str | None:
    """The file of the BLAS library numpy's products use, if threadpoolctl can tell it."""
    from .blas_pools import blas_libraries, blas_owner

    for lib in blas_libraries():
        if blas_owner(lib["filepath"]) == "numpy":
            return lib["filepath"]
    return None


class CblasGemm(types.WrapperAddressProtocol):
    """``cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`` of
    an ILP64 CBLAS (64-bit integers), as a numba first-class function of element type ``dtype``."""

    def __init__(self, address: int, dtype: np.dtype, label: str):
        self.address, self.dtype, self.label = address, np.dtype(dtype), label
        real = types.float32 if self.dtype == np.float32 else types.float64
        i32, i64, ptr = types.int32, types.int64, types.voidptr
        self._signature = types.void(i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)

    def __wrapper_address__(self) -> int:
        return self.address

    def signature(self):
        return self._signature

    def __repr__(self) -> str:
        return f"CblasGemm({self.label})"


def numpy_gemm(dtype) -> CblasGemm | None:
    """numpy's BLAS GEMM for ``dtype`` (float32 or float64), or ``None`` where numpy's BLAS is not
    the ILP64 OpenBLAS of its wheels (then the kernels use numba's ``np.dot``). One object per
    element type and process."""
    return _numpy_gemm(np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)
def _numpy_gemm(dtype_name: str) -> CblasGemm | None:
    dtype = np.dtype(dtype_name)
    path = numpy_blas_path()
    if path is None or dtype not in _SYMBOLS:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for symbol in _SYMBOLS[dtype]:
        fn = getattr(lib, symbol, None)
        if fn is not None:
            return CblasGemm(ctypes.cast(fn, ctypes.c_void_p).value, dtype, f"{symbol} in {path}")
    return None


def _unit_scalars(array):
    """``(1, 0)`` in ``array``'s element type (compiled code only): the GEMM's alpha and beta,
    typed at compile time, so the hot loop allocates nothing for them."""


@overload(_unit_scalars)
def _unit_scalars_typed(array):
    scalar = as_dtype(array.dtype).type
    one, zero = scalar(1), scalar(0)
    return lambda array: (one, zero)


@njit(cache=True)
def dot_into(gemm, a, b, out):
    """``out[...] = a @ b`` with numpy's GEMM ``gemm``, or numba's ``np.dot`` when ``gemm`` is
    ``None`` (a compile-time branch: ``None`` is its own type). ``b`` and ``out`` C-contiguous;
    ``a`` C-contiguous or the transpose of a C-contiguous array (``x.T``); any other layout, and
    empty operands, go through ``np.dot``."""
    if gemm is None:
        np.dot(a, b, out)
        return
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0 or k == 0 or not (b.flags.c_contiguous and out.flags.c_contiguous):
        np.dot(a, b, out)
        return
    if a.flags.c_contiguous:
        trans_a, lda = NO_TRANS, k
    elif a.flags.f_contiguous:
        trans_a, lda = TRANS, m
    else:
        np.dot(a, b, out)
        return
    one, zero = _unit_scalars(out)  # alpha, beta in the GEMM's element type
    gemm(np.int32(ROW_MAJOR), np.int32(trans_a), np.int32(NO_TRANS), m, n, k, one, a.ctypes, lda,
         b.ctypes, n, zero, out.ctypes, n)
