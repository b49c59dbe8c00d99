"""Shared checks of the dataset tests: a Dataset is well formed, features are standardized,
two draws are the same bits."""
import numpy as np

from studies.data.datasets import Dataset


def assert_well_formed(ds):
    assert isinstance(ds, Dataset)
    assert ds.task in ("classification", "regression")
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == ds.n_features
        assert x.flags.c_contiguous and not x.flags.writeable
        assert np.isfinite(x).all()
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert len(x) == len(y) > 0 and y.flags.c_contiguous and not y.flags.writeable
        if ds.task == "classification":
            assert y.dtype == np.int64 and y.shape == (len(x),)
            assert y.min() >= 0 and y.max() < ds.n_outputs
        else:
            assert y.dtype == np.float64 and y.shape == (len(x), ds.n_outputs)
    assert ds.meta["n_train"] == len(ds.y_train) and ds.meta["n_test"] == len(ds.y_test)


def assert_standardized(x):
    std = x.std(axis=0)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-10)
    assert np.all((np.abs(std - 1.0) < 1e-10) | (std == 0.0))


def same_arrays(a, b):
    """Bitwise equality of the four arrays."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    return all(getattr(a, k).tobytes() == getattr(b, k).tobytes() for k in keys)
