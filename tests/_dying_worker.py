"""A worker function that really dies: a group holding a run of seed DOOMED_SEED ends its
worker process at once (os._exit, as a segfault or an out-of-memory kill would); any other group
is executed as usual. Tests install it as the runner's work function; it lives here, importable
by spawned and Dask worker processes alike."""
import os

from studies.run.execute import execute_group

DOOMED_SEED = 7


def execute_or_die(configs, labels=None):
    if any(config["seed"] == DOOMED_SEED for config in configs):
        os._exit(70)
    return execute_group(configs, labels)
