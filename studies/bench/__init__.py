"""The validate-then-time benchmark of the kernels and the train step against NumPy, PyTorch and
JAX, run side by side in one process."""
