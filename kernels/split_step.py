"""Split train steps: the batch in two halves and the update in two parameter ranges, on two
threads (the caller and the process's helper thread, `step_helper`).

A batch of B rows splits into rows [0, B0) and [B0, B), B0 = B - B // 2, and the parameter
vector at `split_stages.split_point`; the pieces each side runs are in `split_stages`. Each
piece is computed by the same compiled code whichever thread runs it, on arrays of the same
types (the second side's are always views made from the addresses in the network's `job`):
when the helper is busy or asleep the caller runs both sides itself, in the same order, and
gets the same bits. A split step's bits differ from the one-thread step's
(`step.run_batches`) only in how sums are grouped. Batch norm needs the whole batch's
statistics, so networks with it never split.

The threads meet through an int64 `flags` array and atomics, without the GIL. The caller moves
the helper's state IDLE -> CLAIMED (a compare-exchange, so it only succeeds while the helper is
spinning), writes the job's address and sets GO. After stage k of step s a side publishes
s * STAGES + k in its own counter and waits for the other's: 1 the halves, 2 the combine,
3 the caller's decision, 4 the clipping by norm (only then), 5 the update. The helper sets
FINISHED, then counts the call in flags[SERVED], when it will read nothing more of it; the
caller waits for the count and sets IDLE.
"""
import numpy as np
from numba import carray

from ._jit import kernel
from .atomics import compare_exchange, cycle_counter, load_acquire, nap, pointer, \
    spin_pause, store_release, yield_thread
from .layout import DIVERGED_UPDATE, allocate_record, allocate_workspace, pack_record, \
    pack_workspace, unpack_netspec, unpack_record, unpack_workspace
from .optimizers import N_CODES, N_HYPER
from .split_stages import E_BN_EPS, E_BN_MOMENTUM, E_FINITE0, E_FINITE1, E_GO_ON, E_LOSS1, \
    E_T, begin_step, checks_early, clip_and_check, combine_range, decide_step, \
    exchange_length, finish_step, half_pass, update_range

# flags (one per process): the helper's state, the wake request and the address of the job,
# then each side's stage counter on its own cache line.
IDLE, CLAIMED, GO, FINISHED, ASLEEP, STOP = range(6)
STATE, WAKE, JOB, SERVED, CALLER_AT, HELPER_AT = 0, 1, 2, 3, 8, 16
N_FLAGS = 24
STAGES = 8  # counter values per step (5 used)
SPIN_BEFORE_YIELD = 50_000  # cycles (~20 us) a wait spins before it yields between looks

# job (int64, one per network): the addresses and sizes of the arrays the second side uses.
(J_ITEMSIZE, J_STEPS, J_BATCH, J_SPLIT, J_SPEC, J_SPEC_N, J_ACT, J_LOSS, J_PARAMS, J_GRADS,
 J_GRADS1, J_RUNNING, J_N_PARAMS, J_N_RUNNING, J_WORK, J_WORK_N, J_SEG_SQ, J_BOUNDS, J_CAP,
 J_REC, J_REC_N, J_STATUS, J_M, J_V, J_CODES, J_HYPER, J_X, J_X_ROWS, J_Y, J_ORDER, J_N_ORDER,
 J_EXCH, J_EXCH_N) = range(33)
N_JOB = 33

def second_side_buffers(sizes, cap, dtype, n_params):
    """(grads1, packed work1, packed rec1, exchange) for split_batches, and the job array."""
    n_layers = len(sizes) - 1
    work = pack_workspace(allocate_workspace(np.asarray(sizes), cap, dtype))
    second = (np.zeros(n_params, dtype), work, pack_record(allocate_record(1, n_layers)),
              np.zeros(exchange_length(n_layers)))
    return second, np.zeros(N_JOB, np.int64)


@kernel
def _publish(flags, counter, value):
    store_release(flags, counter, value)


@kernel
def _await(flags, counter, value):
    """Spins until flags[counter] >= value; after SPIN_BEFORE_YIELD cycles it yields the
    processor between looks, so that on an oversubscribed machine a thread waiting for the
    other side lets it run rather than spinning out its time slice."""
    if load_acquire(flags, counter) >= value:
        return
    start = cycle_counter()
    while load_acquire(flags, counter) < value:
        if cycle_counter() - start > SPIN_BEFORE_YIELD:
            yield_thread()
        else:
            spin_pause()


@kernel
def _step_rows(step, batch_size, n_rows):
    """(lo, middle, hi) of step `step`'s batch and its halves."""
    lo = step * batch_size
    hi = min(n_rows, lo + batch_size)
    return lo, hi - (hi - lo) // 2, hi


@kernel
def _address(a):
    return np.int64(a.ctypes.data)


@kernel
def _write_job(job, spec, model, opt, data, second, n_steps, split):
    """The addresses of everything the second side reads or writes."""
    ints, act, loss_code, bn_eps, bn_momentum = spec
    params, grads, running = model
    codes, hyper, m, v = opt
    x, y, order, batch_size = data
    grads1, work1, rec1, exch = second
    job[J_ITEMSIZE], job[J_STEPS], job[J_BATCH], job[J_SPLIT] = params.itemsize, n_steps, \
        batch_size, split
    job[J_SPEC], job[J_SPEC_N], job[J_ACT], job[J_LOSS] = _address(ints), ints.shape[0], \
        _address(act), loss_code
    exch[E_BN_EPS], exch[E_BN_MOMENTUM] = bn_eps, bn_momentum
    job[J_PARAMS], job[J_GRADS], job[J_GRADS1] = _address(params), _address(grads), \
        _address(grads1)
    job[J_RUNNING], job[J_N_PARAMS], job[J_N_RUNNING] = _address(running), params.shape[0], \
        running.shape[0]
    buf, seg_sq, bounds, cap = work1
    job[J_WORK], job[J_WORK_N], job[J_SEG_SQ], job[J_BOUNDS], job[J_CAP] = \
        _address(buf), buf.shape[0], _address(seg_sq), _address(bounds), cap
    rec_buf, status, _ = rec1
    job[J_REC], job[J_REC_N], job[J_STATUS] = _address(rec_buf), rec_buf.shape[0], \
        _address(status)
    job[J_M], job[J_V], job[J_CODES], job[J_HYPER] = _address(m), _address(v), \
        _address(codes), _address(hyper)
    job[J_X], job[J_X_ROWS], job[J_Y] = _address(x), x.shape[0], _address(y)
    job[J_ORDER], job[J_N_ORDER], job[J_EXCH], job[J_EXCH_N] = _address(order), \
        order.shape[0], _address(exch), exch.shape[0]


@kernel
def _second_side(job, dtype):
    """The second side's (net, model, work, rec, (x, y, order), (codes, hyper, m, v), exch),
    views of the arrays at the addresses in `job`: the same types whichever thread asks."""
    n_layers = (job[J_SPEC_N] - 3) // 9  # the packed spec: 9 int fields, 3 one entry longer
    exch = carray(pointer(job[J_EXCH], np.float64), job[J_EXCH_N])
    net = unpack_netspec((carray(pointer(job[J_SPEC], np.int64), job[J_SPEC_N]),
                          carray(pointer(job[J_ACT], np.float64), n_layers), job[J_LOSS],
                          exch[E_BN_EPS], exch[E_BN_MOMENTUM]))
    n_params = job[J_N_PARAMS]
    params = carray(pointer(job[J_PARAMS], dtype), n_params)
    grads = carray(pointer(job[J_GRADS], dtype), n_params)
    grads1 = carray(pointer(job[J_GRADS1], dtype), n_params)
    running = carray(pointer(job[J_RUNNING], dtype), job[J_N_RUNNING])
    work = unpack_workspace((carray(pointer(job[J_WORK], dtype), job[J_WORK_N]),
                             carray(pointer(job[J_SEG_SQ], np.float64), n_layers),
                             carray(pointer(job[J_BOUNDS], np.int64), 12), job[J_CAP]))
    rec = unpack_record((carray(pointer(job[J_REC], np.float64), job[J_REC_N]),
                         carray(pointer(job[J_STATUS], np.int64), 2), n_layers))
    opt = (carray(pointer(job[J_CODES], np.int64), N_CODES),
           carray(pointer(job[J_HYPER], np.float64), N_HYPER),
           carray(pointer(job[J_M], dtype), n_params), carray(pointer(job[J_V], dtype), n_params))
    rows = job[J_X_ROWS]
    data = (carray(pointer(job[J_X], dtype), (rows, net.sizes[0])),
            carray(pointer(job[J_Y], dtype), (rows, net.sizes[n_layers])),
            carray(pointer(job[J_ORDER], np.int64), job[J_N_ORDER]))
    return net, (params, grads, grads1, running), work, rec, data, opt, exch


@kernel
def _second_half(side, step, batch_size):
    """Stage 1 of the second side: its half of step `step`'s batch, loss into the exchange."""
    net, (params, grads, grads1, running), work, rec, data, opt, exch = side
    lo, mid, hi = _step_rows(step, batch_size, data[2].shape[0])
    exch[E_LOSS1] = half_pass(net, (params, grads1, running), work, rec, 0, data, mid, hi, hi - lo)


@kernel
def _second_combine(side, split):
    net, (params, grads, grads1, running), work, rec, data, opt, exch = side
    combine_range(net, params, grads, grads1, opt, split, params.shape[0], exch, 1)


@kernel
def _second_check(side, split):
    net, (params, grads, grads1, running), work, rec, data, opt, exch = side
    clip_and_check(net, params, grads, opt, split, params.shape[0], exch, 1)


@kernel
def _second_update(side, split):
    net, (params, grads, grads1, running), work, rec, data, opt, exch = side
    update_range(net, params, grads, opt, split, params.shape[0], exch, 1)


@kernel
def _meet_or_run(duo, flags, seq, stage, side, step, batch_size, split):
    """The end of stage `stage` of a step (sequence base `seq`) on the caller's side: with the
    helper, publish this side's progress and wait for the helper's; without it, run the second
    side's piece of the stage (1 half pass, 2 combine, 4 clip and check, 5 update) here."""
    if duo:
        _publish(flags, CALLER_AT, seq + stage)
        _await(flags, HELPER_AT, seq + stage)
    elif stage == 1:
        _second_half(side, step, batch_size)
    elif stage == 2:
        _second_combine(side, split)
    elif stage == 4:
        _second_check(side, split)
    else:
        _second_update(side, split)


@kernel
def split_batches(spec, model, opt, work, data, rec, second, job, flags, split, dtype):
    """step.train_batches with every step split (see the module's docstring) at `split`.
    second = (grads1, packed work1, packed rec1, exchange), the second side's buffers; job: the
    network's int64 job array; flags: the helper's; dtype: the parameters' NumPy type. The
    helper thread takes the second side when it is spinning; else this thread computes both."""
    net, w0, r = unpack_netspec(spec), unpack_workspace(work), unpack_record(rec)
    params, grads, running = model
    codes, hyper, m, v, t_state = opt
    x, y, order, batch_size = data
    n_steps = r.loss.shape[0]
    _write_job(job, spec, model, (codes, hyper, m, v), data, second, n_steps, split)
    side = _second_side(job, dtype)
    exch = second[3]
    r1 = side[3]
    duo = compare_exchange(flags, STATE, IDLE, CLAIMED)
    calls = flags[SERVED]
    if duo:
        flags[JOB] = _address(job)
        flags[CALLER_AT] = 0
        flags[HELPER_AT] = 0
        store_release(flags, STATE, GO)
    else:
        store_release(flags, WAKE, 1)
    done = n_steps
    early = checks_early(codes)
    for step in range(n_steps):
        seq = step * STAGES
        lo, mid, hi = _step_rows(step, batch_size, order.shape[0])
        begin_step((codes, hyper, t_state), exch)
        loss0 = half_pass(net, model, w0, r, step, (x, y, order), lo, mid, hi - lo)
        _meet_or_run(duo, flags, seq, 1, side, step, batch_size, split)
        combine_range(net, params, grads, second[0], (codes, hyper, m, v), 0, split, exch, 0)
        _meet_or_run(duo, flags, seq, 2, side, step, batch_size, split)
        cause = decide_step(net, r, r1, step, mid - lo, hi - mid, loss0, (codes, hyper, t_state),
                        exch)
        if duo:
            _publish(flags, CALLER_AT, seq + 3)
        if cause == 0 and not early:
            clip_and_check(net, params, grads, (codes, hyper, m, v), 0, split, exch, 0)
            _meet_or_run(duo, flags, seq, 4, side, step, batch_size, split)
            if exch[E_FINITE0] == 0.0 or exch[E_FINITE1] == 0.0:
                cause = DIVERGED_UPDATE
        if cause:
            r.status[0], r.status[1] = cause, step
            done = step
            break
        update_range(net, params, grads, (codes, hyper, m, v), 0, split, exch, 0)
        _meet_or_run(duo, flags, seq, 5, side, step, batch_size, split)
        finish_step(net, r, step, exch)
        t_state[0] = int(exch[E_T])
    if duo:  # the helper reads nothing of this call once it has counted it
        _await(flags, SERVED, calls + 1)
        store_release(flags, STATE, IDLE)
    return done


@kernel
def _helper_side(flags, dtype):
    """The helper's side of split_batches: the second side of every step of the job."""
    job = carray(pointer(flags[JOB], np.int64), N_JOB)
    side = _second_side(job, dtype)
    exch = side[6]
    split = job[J_SPLIT]
    for step in range(job[J_STEPS]):
        seq = step * STAGES
        if step > 0:  # the caller's side of the last update is in
            _await(flags, CALLER_AT, seq - STAGES + 5)
        _second_half(side, step, job[J_BATCH])
        _publish(flags, HELPER_AT, seq + 1)
        _await(flags, CALLER_AT, seq + 1)
        _second_combine(side, split)
        _publish(flags, HELPER_AT, seq + 2)
        _await(flags, CALLER_AT, seq + 3)
        if exch[E_GO_ON] == 0.0:
            break
        if not checks_early(side[5][0]):
            _second_check(side, split)
            _publish(flags, HELPER_AT, seq + 4)
            _await(flags, CALLER_AT, seq + 4)
            if exch[E_FINITE0] == 0.0 or exch[E_FINITE1] == 0.0:
                break
        _second_update(side, split)
        _publish(flags, HELPER_AT, seq + 5)
    store_release(flags, STATE, FINISHED)
    store_release(flags, SERVED, flags[SERVED] + 1)  # the caller waits for this


@kernel
def serve(flags, spin_cycles, nap_us, naps):
    """The helper thread's loop: on GO, its side of the caller's split_batches. After
    spin_cycles processor cycles without work it moves IDLE -> ASLEEP and naps (nap_us at a
    time) until a caller sets flags[WAKE]; after `naps` naps it returns ASLEEP (to block in
    Python). Returns STOP when asked to."""
    since = cycle_counter()
    while True:
        state = load_acquire(flags, STATE)
        if state == GO:
            if carray(pointer(flags[JOB], np.int64), N_JOB)[J_ITEMSIZE] == 4:
                _helper_side(flags, np.float32)
            else:
                _helper_side(flags, np.float64)
            since = cycle_counter()
        elif state == STOP:
            return STOP
        elif state == IDLE and cycle_counter() - since > spin_cycles:
            if compare_exchange(flags, STATE, IDLE, ASLEEP):
                slept = 0
                while load_acquire(flags, WAKE) == 0 and load_acquire(flags, STATE) == ASLEEP:
                    if slept == naps:
                        return ASLEEP
                    nap(nap_us)
                    slept += 1
                store_release(flags, WAKE, 0)
                if not compare_exchange(flags, STATE, ASLEEP, IDLE):
                    return STOP
                since = cycle_counter()
        else:
            spin_pause()
