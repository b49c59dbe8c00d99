"""Groups of runs trained together: the runs of a sweep that share an architecture and a
training schedule (group_key) go through one multi-run engine, one compiled call per chunk for
the whole group, by the one chunk driver (studies.run.execute.train_group) that also trains a
single run, as a group of one.

    groups = plan_groups(tasks, workers=2)       # lists of tasks with one group_key
    payloads = execute_group([t.config for t in group], labels)   # one payload per run
"""
import json

import numpy as np

from studies.run.execute import execute_group, group_key, train_group

__all__ = ["MAX_GROUP", "group_key", "plan_groups", "train_group", "execute_group"]

MAX_GROUP = 16  # runs per group at most


def plan_groups(tasks, workers, enabled=True, max_size=MAX_GROUP):
    """The tasks (objects with .config and .labels) as a list of groups (lists of tasks).
    Tasks group by group_key and labels; a key's tasks split into balanced groups of at most
    min(max_size, len(tasks) // workers), so that N workers get at least N groups whenever
    there are N tasks. Groups come largest estimated work first (ties in grid order), so a pool
    ends on small ones; enabled=False: every task alone, in grid order."""
    if not enabled:
        return [[task] for task in tasks]
    cap = max(1, min(max_size, len(tasks) // max(1, workers)))
    by_key, alone = {}, []
    for index, task in enumerate(tasks):
        key = group_key(task.config)
        if key is None:
            alone.append((index, [task]))
        else:
            by_key.setdefault((key, json.dumps(task.labels, sort_keys=True)), []).append(
                (index, task))
    groups = list(alone)
    for members in by_key.values():
        parts = -(-len(members) // cap)
        for chunk in np.array_split(np.arange(len(members)), parts):
            groups.append((members[chunk[0]][0], [members[i][1] for i in chunk]))
    return [group for _, group in sorted(groups, key=lambda g: (-_work(g[1]), g[0]))]


def _work(group):
    """A group's training work, roughly: runs x steps x weights of its hidden layers."""
    config = group[0].config
    return len(group) * config["steps"] * (config["depth"] + 1) * config["width"] ** 2
