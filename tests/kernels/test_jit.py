"""kernels/_jit.py: the cache folder named after a hash of the kernel sources, the compile flags
(fastmath without nnan/ninf, so NaN and Inf checks survive; the NumPy error model; no reassoc
in kernel_ordered), reductions kept in the written order, and a fresh compile and a cached load
of a kernel_ordered kernel giving the same bits in two processes."""
import importlib
import math
import pkgutil
import shutil
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core import config as numba_config

import kernels
from kernels import _jit
from kernels._jit import FASTMATH, LANES, cache_dir_for, kernel, kernel_inline, kernel_ordered
from _fresh_cache import fresh_and_cached

KERNELS_DIR = Path(_jit.__file__).parent
ROOT = KERNELS_DIR.parent
HASH_LENGTH = 12


def copy_sources(dest):
    dest.mkdir()
    for path in KERNELS_DIR.glob("*.py"):
        shutil.copy(path, dest / path.name)
    return dest


def test_cache_folder_is_keyed_on_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    here = cache_dir_for(KERNELS_DIR, "kernels")
    name = Path(here).name
    assert Path(here).parent == tmp_path / "cache"
    assert name.startswith("kernels-") and len(name) == len("kernels-") + HASH_LENGTH
    int(name[len("kernels-"):], 16)  # hex digest
    same = copy_sources(tmp_path / "same")
    assert cache_dir_for(same, "kernels") == here  # identical sources: the same folder
    assert cache_dir_for(same, "other") == str(tmp_path / "cache" / f"other-{name[8:]}")
    # files that are not .py directly in the folder do not count
    (same / "notes.txt").write_text("not a source")
    (same / "sub").mkdir()
    (same / "sub" / "extra.py").write_text("x = 1\n")
    assert cache_dir_for(same, "kernels") == here
    # editing any source, renaming one or adding one gives a fresh folder
    seen = {here}
    for path in sorted(same.glob("*.py")):
        keep = path.read_bytes()
        path.write_bytes(keep + b"\n# edited\n")
        seen.add(cache_dir_for(same, "kernels"))
        path.write_bytes(keep)
    assert len(seen) == 1 + len(list(same.glob("*.py")))
    assert cache_dir_for(same, "kernels") == here  # restored
    first = sorted(same.glob("*.py"))[0]
    first.rename(same / ("renamed_" + first.name))
    assert cache_dir_for(same, "kernels") not in seen
    (same / ("renamed_" + first.name)).rename(first)
    (same / "new_module.py").write_text("")
    assert cache_dir_for(same, "kernels") not in seen


def test_cache_base_defaults_to_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = Path(cache_dir_for(KERNELS_DIR, "kernels"))
    assert folder.parent == tmp_path / ".cache" / "gradlab" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")  # empty means unset
    assert Path(cache_dir_for(KERNELS_DIR, "kernels")) == folder


def test_module_cache_dir_is_the_hash_of_this_checkout():
    assert _jit.CACHE_DIR == cache_dir_for(KERNELS_DIR, "kernels")


def project_kernels():
    """Every numba dispatcher defined in a kernels/ module (the CUDA package aside)."""
    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        if info.ispkg:
            continue
        module = importlib.import_module(f"kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and \
                    obj.py_func.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_kernel_keeps_nan_and_inf_semantics():
    found = project_kernels()
    assert len(found) > 30 and "losses.mse_forward" in found and "optimizers._sgd" in found
    for name, dispatcher in found.items():
        opts = dispatcher.targetoptions
        flags = set(opts["fastmath"])
        assert not flags & {"nnan", "ninf", "fast"}, name
        assert flags in (set(FASTMATH), set(FASTMATH) - {"reassoc"},
                         set(FASTMATH) - {"reassoc", "contract"}), (name, flags)
        assert opts["nogil"] and opts["error_model"] == "numpy", name
        assert dispatcher._cache.__class__.__name__ == "FunctionCache", name  # cache=True


def test_decorators_flags():
    assert not FASTMATH & {"nnan", "ninf"}
    assert set(kernel(plain_sum).targetoptions["fastmath"]) == set(FASTMATH)
    ordered = kernel_ordered(plain_sum).targetoptions
    assert set(ordered["fastmath"]) == set(FASTMATH) - {"reassoc"}
    assert kernel_inline(plain_sum).targetoptions["inline"] == "always"


def test_decorating_restores_numba_cache_dir():
    before = numba_config.CACHE_DIR
    kernel(plain_sum)
    kernel_ordered(plain_sum)
    assert numba_config.CACHE_DIR == before


# Functions compiled by the tests below (module level so numba can cache them; compiled into a
# temporary cache folder, not the project's). Each is compiled under one decorator only: numba's
# cache index does not key on the fastmath flags, so a second decorator would load the first's.
def plain_sum(x):
    s = x[0] - x[0]  # zero of the input dtype (x[0] * 0 would be float64)
    for i in range(x.shape[0]):
        s += x[i]
    return s


def count_nan(x):
    n = 0
    for v in x:
        if v != v:
            n += 1
    return n


def count_not_finite(x):
    n = 0
    for v in x:
        if not np.isfinite(v):
            n += 1
    return n


def sum_of_squares_is_finite(x):
    s = 0.0
    for v in x:
        s += v * v
    return math.isfinite(s)


def any_isnan(x):
    return np.isnan(x).any()


def quotient(a, b):
    return a / b


def lane_sum(x):
    """LANES partial sums (entry i to lane i % LANES), combined in lane order."""
    acc = np.zeros(LANES, x.dtype)
    for i in range(x.shape[0]):
        acc[i % LANES] += x[i]
    s = x.dtype.type(0)
    for j in range(LANES):
        s += acc[j]
    return s


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_and_inf_checks_survive_fastmath(dtype, private_cache):
    x = np.array([1.0, np.nan, -2.0, np.inf, -np.inf, 3.0, np.nan], dtype)
    clean = np.array([1.0, -2.0, 3.0], dtype)
    assert kernel(count_nan)(x) == 2 and kernel(count_nan)(clean) == 0
    assert kernel(count_not_finite)(x) == 4 and kernel(count_not_finite)(clean) == 0
    assert kernel(any_isnan)(x) and not kernel(any_isnan)(clean)
    assert not kernel(sum_of_squares_is_finite)(np.array([1.0, np.inf], dtype))
    assert not kernel(sum_of_squares_is_finite)(np.array([1.0, np.nan], dtype))
    big = np.full(2, np.finfo(dtype).max / 2, dtype)
    assert not kernel(sum_of_squares_is_finite)(big)  # the squares overflow to inf
    assert kernel(sum_of_squares_is_finite)(clean)


def test_numpy_error_model(private_cache):
    divide = kernel(quotient)
    assert divide(1.0, 0.0) == math.inf and divide(-1.0, 0.0) == -math.inf
    assert math.isnan(divide(0.0, 0.0))  # no ZeroDivisionError


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_ordered_sums_in_the_written_order(dtype, private_cache):
    """Without reassoc the compiler may not regroup a sum: a sequential sum is the sequential
    sum's bits (np.cumsum accumulates in order), and the lane sum is LANES in-order partial
    sums combined in lane order."""
    x = np.random.default_rng(0).normal(size=10_007).astype(dtype)
    sequential = np.cumsum(x, dtype=dtype)[-1]
    assert kernel_ordered(plain_sum)(x) == sequential
    n_full = x.size // LANES * LANES
    lanes = np.zeros(LANES, dtype)
    lanes[:] = np.cumsum(x[:n_full].reshape(-1, LANES), axis=0, dtype=dtype)[-1]
    lanes[:x.size - n_full] += x[n_full:]
    expected = np.cumsum(lanes, dtype=dtype)[-1]
    assert kernel_ordered(lane_sum)(x) == expected


def test_project_lane_sums_combine_in_lane_order():
    from kernels.optimizers import lane_sums
    acc = np.random.default_rng(1).normal(size=(2, LANES)) * 10.0 ** np.arange(LANES)
    acc = np.random.default_rng(1).normal(size=(3, LANES)) * 10.0 ** np.arange(LANES)
    sums = lane_sums(acc)
    assert len(sums) == 3
    assert all(s == np.cumsum(row)[-1] for s, row in zip(sums, acc))


FRESH_OR_CACHED = """
import hashlib, numpy as np
from kernels import _jit
from kernels.optimizers import _sgd
rng = np.random.default_rng(0)
params = rng.normal(size=1003).astype(np.float32)
grads = rng.normal(size=1003).astype(np.float32)
sums = _sgd(params, grads, np.uint64(0), np.uint64(1003), np.float32(0.1), np.float32(0.01),
           True)
print(_jit.CACHE_DIR)
print(sum(_sgd.stats.cache_misses.values()), sum(_sgd.stats.cache_hits.values()))
print(float(sums[0]).hex(), float(sums[1]).hex(), hashlib.sha256(params.tobytes()).hexdigest())
"""


def test_fresh_compile_and_cached_load_give_the_same_bits(tmp_path):
    """One process compiles the kernel_ordered SGD update into an empty cache, a second loads it
    from there: the same update and the same sums of squares, to the bit."""
    fresh, cached = (out.split("\n") for out in fresh_and_cached(FRESH_OR_CACHED, tmp_path))
    cache_dir = Path(fresh[0])
    assert cache_dir.parent == tmp_path and cache_dir.name == Path(_jit.CACHE_DIR).name
    assert any(cache_dir.rglob("*._sgd-*.nbi")), "the kernel was not cached in CACHE_DIR"
    assert fresh[1] == "1 0" and cached[1] == "0 1"  # compiled, then loaded
    assert fresh[2] == cached[2]
