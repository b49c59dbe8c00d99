"""Executing studies: the plan of a spec, the executors (serial, spawned processes, Dask), the
chunk driver that trains and records each run, and the progress display."""
