"""Worker processes and clusters of the runner: spawned pool workers that never outlive their
parent and ignore Ctrl-C (the parent ends the sweep), the worker count, and a Dask client that
fails fast on an unreachable scheduler.
"""
import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}
WORKERS_PER_CORE = 4  # --workers above this many per core is capped
CONNECT_TIMEOUT_S = 5
PR_SET_PDEATHSIG = 1
KILL_WAIT_S = 5  # a SIGKILLed worker is reaped within this


def init_worker(parent_pid):
    """Pool initializer: SIGKILL this worker when its parent dies (Linux prctl; the parent is
    the thread that spawned it, the runner's), exit at once if the parent already died before
    that, and leave SIGINT to the parent, which ends the sweep and the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def new_pool(workers):
    """A spawn pool of `workers` single-threaded workers (spawn: a process that ran threaded
    compiled code must not fork)."""
    os.environ.update(SINGLE_THREAD_ENV)  # inherited by the spawned workers
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=init_worker, initargs=(os.getpid(),))


def kill_pool(pool):
    """Ends a pool now: its workers are killed and reaped (KILL_WAIT_S at most each), queued work
    cancelled, no work waited for. Then the parent's end of the result pipe is closed: a worker
    killed while sending a result leaves a partial message there, and the pool's manager thread,
    which the interpreter joins at exit, would wait for the rest of it forever; with no writer
    left it reads EOF and ends."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.kill()
        except (OSError, ValueError):
            pass
    for process in processes:
        try:
            process.join(KILL_WAIT_S)
        except (OSError, ValueError):
            pass
    results = getattr(pool, "_result_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)
    if results is not None:
        results._writer.close()


def worker_count(requested, n_groups, cpus=None):
    """(workers to start, a one-line note or None): the request (default one per core) capped
    at WORKERS_PER_CORE per core and at the groups pending; the note says why when an explicit
    request was lowered."""
    cpus = cpus or os.cpu_count() or 1
    wanted = requested or cpus
    count = max(1, min(wanted, WORKERS_PER_CORE * cpus, n_groups))
    if requested and count < requested:
        why = f"{WORKERS_PER_CORE} per core on {cpus} cores" if count < n_groups and \
            count == WORKERS_PER_CORE * cpus else f"{n_groups} groups of runs pending"
        return count, f"gradlab run: --workers {requested}: using {count} ({why})"
    return count, None


def connect(scheduler):
    """A distributed.Client of a scheduler address; ValueError in one line, after
    CONNECT_TIMEOUT_S at most, when it cannot be reached."""
    from distributed import Client
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except Exception as err:  # OSError on a timeout; anything else a bad address or peer
        raise ValueError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} within "
                         f"{CONNECT_TIMEOUT_S} s ({type(err).__name__})") from None
