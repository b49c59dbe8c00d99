"""`RunSet`: what every group of R networks of one architecture shares, on the CPU (`MultiMLP`)
and on the device (`CudaMLP`, `CudaMultiMLP`): the architecture check, per-run arguments, row
orders and the common properties, so the checks cannot drift apart between the two paths."""
import numpy as np

from .mlp import MLP


def check_same_architecture(a, b):
    """a and b must share sizes, dtype, loss, activations (and parameters) and batch norm."""
    same = (a.sizes == b.sizes and a.dtype == b.dtype and a.loss_name == b.loss_name
            and np.array_equal(a.spec.act_code, b.spec.act_code)
            and np.array_equal(a.spec.act_param, b.spec.act_param)
            and np.array_equal(a.spec.bn, b.spec.bn))
    if not same:
        raise ValueError(f"nets: every network of a multi-run group needs the same architecture "
                         f"(sizes, activations, loss, batch norm, dtype); got {a!r} and {b!r}")


def per_run(value, runs, name):
    """One value for every run, or a list/tuple of exactly `runs` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != runs:
            raise ValueError(f"{name}: expected one or {runs} values, got {len(value)}")
        return list(value)
    return [value] * runs


def check_orders(order, n_rows, runs):
    """Row orders as a C-contiguous (1 or runs, rows) int64 array: None (0..n_rows-1), one
    shared (rows,) order, or (1 or runs, rows) orders; indices in [0, n_rows)."""
    order = np.arange(n_rows, dtype=np.int64) if order is None else np.asarray(order)
    if order.dtype.kind not in "iu" or order.ndim not in (1, 2) or order.shape[-1] == 0:
        raise ValueError(f"order: expected a non-empty integer array of row indices (rows,) "
                         f"or (runs, rows), got {order.dtype} {order.shape}")
    if order.ndim == 2 and order.shape[0] not in (1, runs):
        raise ValueError(f"order: expected {runs} rows (one per run), got {order.shape}")
    if order.min() < 0 or order.max() >= n_rows:
        raise ValueError(f"order: indices must lie in [0, {n_rows - 1}]")
    return np.ascontiguousarray(order.reshape(-1, order.shape[-1]), np.int64)


class RunSet:
    """Base of the multi-run groups: `templates` holds a copy of each run's MLP (architecture,
    init, seed); subclasses hold the parameters (host arrays or device buffers)."""

    def _set_templates(self, nets):
        """Checks `nets` (a non-empty list of MLPs of one architecture) and keeps copies."""
        nets = list(nets)
        if not nets or not all(isinstance(n, MLP) for n in nets):
            raise ValueError(f"nets: expected a non-empty list of kernels.MLP, got {nets!r}")
        for net in nets[1:]:
            check_same_architecture(nets[0], net)
        self.templates = [net.copy() for net in nets]
        return self.templates

    @property
    def template(self):
        return self.templates[0]

    @property
    def runs(self):
        return len(self.templates)

    @property
    def sizes(self):
        return list(self.template.sizes)

    @property
    def spec(self):
        return self.template.spec

    @property
    def dtype(self):
        return self.template.dtype

    @property
    def n_params(self):
        return self.template.n_params

    @property
    def n_layers(self):
        return len(self.template.sizes) - 1

    @property
    def batchnorm(self):
        return self.template.batchnorm

    @property
    def classification(self):
        return self.template.classification

    def _per_run(self, value, name):
        return per_run(value, self.runs, name)

    def _orders(self, order, n_rows):
        return check_orders(order, n_rows, self.runs)
