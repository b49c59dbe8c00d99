"""Executing studies: the plan of a spec and the executors (runner: serial, spawned processes,
Dask) under one settle-or-retry policy (policy), their workers (workers), the one chunk driver
that trains and records every run, alone or in groups, on the CPU or the GPU (execute, record,
group, device), the code version run ids hash (version), and the progress bar (progress)."""
