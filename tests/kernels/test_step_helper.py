"""The helper thread of split steps (kernels.step_helper): when a step splits, the helper
taking steps, sleeping and waking, switched off, and after os.fork."""
import faulthandler
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kernels import MLP
from kernels import step_helper
from kernels.gemm_threads import ONE_THREAD_FLOPS, step_flops
from kernels.optimizers import Adam
from test_split_step import train

ROOT = Path(__file__).resolve().parents[2]


def _fresh_process_words(code, **env):
    """The words `code` prints in a new interpreter at the repository root, with `env` on top
    of this process's environment (a value None removes the variable)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True, timeout=300).stdout.split()


def test_split_decision(split_steps):
    big = 1e7
    assert step_helper.splits(big, 2, False, 64)
    assert not step_helper.splits(big, 0, False, 64)  # one thread, or a step above the BLAS's
    assert not step_helper.splits(big, 2, True, 64)  # batch norm needs the whole batch
    assert not step_helper.splits(big, 2, False, 1)
    step_helper.enable_split_steps(False)
    assert not step_helper.splits(big, 2, False, 64)  # off
    step_helper.enable_split_steps(True)
    assert step_helper.splits(big, 2, False, 64)


def test_split_steps_are_off_by_default_and_large_enough_when_on():
    code = ("from kernels import step_helper\n"
            "print(step_helper.splits(1e8, 2, False, 64), step_helper.SPLIT_FLOPS)\n")
    out = _fresh_process_words(code, GRADLAB_SPLIT_STEPS=None)
    assert out[0] == "False"
    assert float(out[1]) < step_flops([40] + [64] * 20 + [10], 64) < ONE_THREAD_FLOPS


def test_a_helper_that_slept_in_python_is_woken_by_the_next_steps(split_steps):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 13)), rng.integers(0, 3, 16)
    net, opt = MLP([13, 37, 21, 3], activation="tanh"), Adam(lr=0.01)
    train(net, opt, [(x, y)] * 3)
    deadline = time.monotonic() + 30  # its naps (about a second) over, it blocks in Python
    while not step_helper._helpers[0].blocked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert step_helper._helpers[0].blocked
    before = step_helper.served_jobs()
    for _ in range(200):
        train(net, opt, [(x, y)])
        if step_helper.served_jobs() > before:
            break
    assert step_helper.served_jobs() > before and not step_helper._helpers[0].blocked


def test_disabled_helper_takes_no_step_and_the_steps_still_split(split_steps):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 13)), rng.integers(0, 3, 16)
    net, opt = MLP([13, 37, 21, 3], activation="tanh"), Adam(lr=0.01)
    train(net, opt, [(x, y)])
    before = step_helper.served_jobs()
    with step_helper.helper_disabled():
        train(net, opt, [(x, y)] * 20)
    assert step_helper.served_jobs() == before
    code = ("import numpy as np\n"
            "from kernels import MLP, step_helper\n"
            "from kernels.gemm_threads import set_blas_threads\n"
            "from kernels.optimizers import Adam\n"
            "set_blas_threads(2); step_helper.SPLIT_FLOPS = 0.0\n"
            "net = MLP([13, 37, 21, 3], activation='tanh')\n"
            "x, y = np.ones((16, 13)), np.zeros(16, np.int64)\n"
            "opt = Adam(lr=0.01)\n"
            "for _ in range(5):\n"
            "    net.train_step(x, y, opt)\n"
            "print(net._second is not None, step_helper.served_jobs(),\n"
            "      len(step_helper._helpers))\n")
    out = _fresh_process_words(code, GRADLAB_STEP_HELPER="0", GRADLAB_SPLIT_STEPS="1")
    assert out == ["True", "0", "0"]


def _child_step(queue):
    faulthandler.dump_traceback_later(100, exit=True)  # a stuck child says where, and ends
    net = MLP([13, 37, 21, 3], activation="tanh", seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 13)), rng.integers(0, 3, 16)
    opt = Adam(lr=0.01)
    for _ in range(3):
        net.train_step(x, y, opt)
    queue.put((net._second is not None, net.params.tobytes()))


def test_a_forked_child_splits_without_the_parents_helper(split_steps):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 13)), rng.integers(0, 3, 16)
    net = MLP([13, 37, 21, 3], activation="tanh", seed=1)
    train(net, Adam(lr=0.01), [(x, y)] * 3)
    assert step_helper.served_jobs() > 0
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_step, args=(queue,), daemon=True)
    child.start()
    try:
        split, params = queue.get(timeout=120)
        child.join(timeout=60)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0 and split
    assert params == net.params.tobytes()


def test_a_helper_thread_that_starts_late_never_strands_a_step():
    code = ("import time\n"
            "import numpy as np\n"
            "from kernels import MLP, step_helper\n"
            "from kernels.gemm_threads import set_blas_threads\n"
            "from kernels.optimizers import Adam\n"
            "set_blas_threads(2); step_helper.SPLIT_FLOPS = 0.0\n"
            "step_helper.enable_split_steps(True); step_helper.WAKE_WAIT_S = 0.0\n"
            "run = step_helper.StepHelper._run\n"
            "def late(self):\n"
            "    time.sleep(0.3)\n"
            "    run(self)\n"
            "step_helper.StepHelper._run = late\n"
            "net = MLP([13, 37, 21, 3], activation='tanh', seed=1)\n"
            "x, y = np.ones((16, 13)), np.zeros(16, np.int64)\n"
            "opt = Adam(lr=0.01)\n"
            "for _ in range(40):\n"
            "    net.train_step(x, y, opt); time.sleep(0.01)\n"
            "print(net._second is not None, np.isfinite(net.params).all())\n")
    assert _fresh_process_words(code) == ["True", "True"]
