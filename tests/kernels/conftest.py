"""Fixtures of the kernel tests."""
import pytest

from kernels import step_helper
from kernels.gemm_threads import blas_threads, set_blas_threads


@pytest.fixture
def split_steps(monkeypatch):
    """Split steps on, BLAS at two threads, and every step split, whatever its size
    (kernels.step_helper)."""
    before = blas_threads()
    assert before is not None, "SciPy's BLAS thread count is not readable (OpenBLAS expected)"
    set_blas_threads(2)
    monkeypatch.setattr(step_helper, "SPLIT_FLOPS", 0.0)
    monkeypatch.setattr(step_helper, "_enabled", [True])
    yield
    set_blas_threads(before)
