"""`CudaMultiMLP`: R networks of one architecture trained together on the GPU.

Parameters, gradients and moments are (R, n_params) buffers; every kernel takes the run from a
grid dimension, so one launch sequence steps all runs. Runs may share one batch or each get
their own, and each run has its own optimizer hyperparameters, schedule and clipping. Every run
equals training that network alone with CudaMLP (and MLP). A run whose step is not finite is
frozen from that step on (nothing applied, recorded in `diverged`); the others go on.
"""
from .mlp import DeviceNets


class CudaMultiMLP(DeviceNets):
    """CudaMultiMLP(nets): nets = a list of CPU MLPs of one architecture (copied to the device)."""

    def __init__(self, nets):
        super().__init__(nets)  # the checks of kernels.runset.RunSet, as MultiMLP

    def train_step(self, x, y, opts, clip=None):
        """One step of every run. x: (B, n_0) shared by all runs or (R, B, n_0); y likewise.
        opts: one optimizer (hyperparameters shared, state per run) or a list of R; clip: one
        Clip, None, or a list. Returns the (R,) losses before the update."""
        loss, _ = self._step_batch(x, y, opts, clip)
        return loss[:, 0]

    def train_epoch(self, x, y, opts, batch_size=None, clip=None, order=None):
        """Consecutive batches of `order` ((rows,) shared or (R, rows) per run) with no host
        round trip; returns the (R, steps) losses. x may be a DeviceData from `upload`."""
        loss, _ = self._epoch(x, y, opts, batch_size, clip, order)
        return loss

    @property
    def diverged(self):
        """(R,) step index (within the call) of each run's first non-finite step, -1 if none."""
        return self.engine.status()[1]

    def reset_diverged(self):
        """Lets frozen (diverged) runs train again from their last finite parameters."""
        self.engine.fetch_status()
        self.engine.clear_flags()

    @property
    def step_counts(self):
        """(R,) optimizer steps applied per run."""
        return self.engine.status()[0]

    def forward(self, x, training=False, logits=False):
        """Outputs of every run on the shared input x: (R, batch, n_L)."""
        return self._forward(x, training, logits)

    def loss_and_grads(self, x, y):
        """((R,) losses, (R, n_params) gradients) with batch statistics; nothing updated."""
        return self._loss_and_grads(x, y)

    def to_cpu(self):
        """A list of CPU MLPs with each run's parameters and running statistics."""
        return self._to_cpu()

    def __repr__(self):
        return f"CudaMultiMLP({self.runs} x {self.template!r})"

