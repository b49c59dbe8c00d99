"""A worker function with real faults: a group holding a run of seed DOOMED_SEED ends its worker
process at once (os._exit, as a segfault or an out-of-memory kill would); a run of momentum
RAISING_MOMENTUM has its momentum set to 1.5 inside the worker, past the spec's validation, so
building its optimizer raises there; any other group is executed as usual. Tests install it as
the runner's work function; it lives here, importable by spawned and Dask worker processes.
large_result keeps the result pipe busy for a pool killed mid-transfer."""
import os

from studies.run.execute import execute_group

DOOMED_SEED = 7
RAISING_MOMENTUM = 0.9


def execute_or_die(configs, labels=None):
    if any(config["seed"] == DOOMED_SEED for config in configs):
        os._exit(70)
    configs = [{**c, "momentum": 1.5} if c.get("momentum") == RAISING_MOMENTUM else c
               for c in configs]
    return execute_group(configs, labels)


def large_result(size):
    """`size` bytes back through the pool's result pipe: long enough in transit that a kill
    lands while it is half sent."""
    return b"x" * size
