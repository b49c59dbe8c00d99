"""The settle-or-retry policy every executor (serial, spawned processes, Dask) shares: for each
group that finished or whose worker died, what is stored and what is submitted again.

- A run that raised (a 'failed' payload) is retried once, alone; failing again it is stored
  failed with its error (stored attempts 2).
- A group whose worker died (crash, out-of-memory kill, SIGKILL) is split into single runs, each
  a suspect that runs alone next: with nothing else in flight, a crash names its culprit. The
  crash of a shared worker counts as no attempt of the runs that merely shared it.
- A suspect whose worker dies while it ran alone has one more try alone; dying again it is
  stored failed "worker died (crash or killed); retried once alone, crashed again" (stored
  attempts 3: once with others, twice alone).

`Settlement` keeps the queue of groups to submit; an executor asks it for the next group that
may start (`next_group`), and hands back each outcome (`finished` or `crashed`). The stored
`attempts` of a run is the count of its counted attempts plus one.
"""
from collections import deque

WORKER_DIED = "worker died (crash or killed)"


def failed(error):
    """The payload stored for a run that could not finish: status 'failed' and its error."""
    return {"run": {"status": "failed", "error": error}, "history": {}, "layers": {}}


class Settlement:
    """Settlement(groups, record): groups (lists of runner.Task) to run; record(task, payload)
    stores one run's outcome."""

    def __init__(self, groups, record):
        self.queue = deque(groups)
        self.record = record

    def __bool__(self):
        return bool(self.queue)

    def next_group(self, in_flight, capacity):
        """The next group to submit with `in_flight` groups running and room for `capacity`,
        or None: a suspect starts only when nothing else runs, and nothing starts beside it."""
        if not self.queue or in_flight >= capacity:
            return None
        if self.queue[0][0].isolate and in_flight:
            return None
        return self.queue.popleft()

    @staticmethod
    def runs_alone(group):
        """Whether a group, once submitted, must be the only one in flight."""
        return group[0].isolate

    def finished(self, group, payloads):
        """A group that came back: each run stored, or resubmitted alone once if it failed."""
        for task, payload in zip(group, payloads):
            if payload["run"]["status"] == "failed" and task.attempts == 0:
                task.attempts += 1
                self.queue.append([task])
            else:
                self.record(task, payload)

    def crashed(self, group):
        """A group whose worker died: its runs become suspects at the head of the queue; a
        suspect that died alone counts an attempt, and is stored failed at its second."""
        for task in reversed(group):
            if task.isolate:  # it ran alone (suspects never share a worker)
                task.attempts += 1
                if task.attempts >= 2:
                    self.record(task, failed(f"{WORKER_DIED}; retried once alone, crashed "
                                             f"again"))
                    continue
            task.isolate = True
            self.queue.appendleft([task])


def drive(settlement, executor):
    """Runs every group of `settlement` on `executor` (submit(group) -> future,
    wait(futures) -> the finished ones, result(future) -> payloads or raises when the worker
    died, capacity: groups in flight at most) until nothing is left."""
    in_flight = {}
    while settlement or in_flight:
        while (group := settlement.next_group(len(in_flight), executor.capacity)) is not None:
            in_flight[executor.submit(group)] = group
            if settlement.runs_alone(group):
                break
        for future in executor.wait(list(in_flight)):
            group = in_flight.pop(future)
            try:
                payloads = executor.result(future)
            except Exception:  # BrokenProcessPool, KilledWorker...: the worker is gone
                settlement.crashed(group)
                continue
            settlement.finished(group, payloads)


def run_serial(settlement, work):
    """The serial executor: every group in this process, by the same policy (a worker dying
    here ends the sweep itself, so only raised runs are retried)."""
    while settlement:
        group = settlement.next_group(0, 1)
        settlement.finished(group, work(group))
