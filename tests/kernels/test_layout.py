"""kernels/layout.py: the flat parameter layout (every parameter exactly once, in the order
W_0 row-major, b_0, [gamma_0, beta_0], W_1, ...), the NetSpec fields, and the three packed
buffers (NetSpec, Workspace, Record): bounds, shapes, dtypes, and pack -> unpack round trips
that give views of the same memory."""
import numpy as np
import pytest

from kernels import MLP
from kernels.layout import N_LAYER_FIELDS, N_STEP_FIELDS, SPEC_INT_FIELDS, SPEC_PLUS_ONE, \
    WORK_FIELDS, NetSpec, Record, Workspace, allocate_record, allocate_workspace, \
    build_netspec, pack_netspec, pack_record, pack_workspace, record_length, record_views, \
    running_stats_buffer, unpack_netspec, unpack_record, unpack_workspace, workspace_bounds

ARCHITECTURES = [[3, 2], [3, 5, 4, 2], [1, 7, 1, 6, 3]]


def build(sizes, batchnorm, loss=1):
    n_layers = len(sizes) - 1
    codes = list(range(10, 10 + n_layers))
    params = [0.1 * (k + 1) for k in range(n_layers)]
    return build_netspec(np.asarray(sizes), codes, params, batchnorm, loss, 1e-5, 0.1)


def offset(view, buf):
    """Element offset of `view`'s first entry inside `buf` (both contiguous, same dtype)."""
    assert np.shares_memory(view, buf) or view.size == 0
    return (view.__array_interface__["data"][0] - buf.__array_interface__["data"][0]) \
        // buf.itemsize


def expected_segments(sizes, batchnorm):
    """[(kind, layer, length)] in the documented order."""
    out, n_layers = [], len(sizes) - 1
    for layer in range(n_layers):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        out += [("W", layer, n_out * n_in), ("b", layer, n_out)]
        if batchnorm and layer < n_layers - 1:
            out += [("gamma", layer, n_out), ("beta", layer, n_out)]
    return out


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_parameter_offsets_cover_the_buffer_once_in_order(sizes, batchnorm):
    spec, n_params = build(sizes, batchnorm)
    segments = expected_segments(sizes, batchnorm)
    assert n_params == sum(length for _, _, length in segments)
    starts = {"W": spec.w_off, "b": spec.b_off, "gamma": spec.g_off, "beta": spec.beta_off}
    count = np.zeros(n_params, np.int64)
    pos = 0
    for kind, layer, length in segments:
        start = int(starts[kind][layer])
        assert start == pos, f"{kind}{layer}: starts at {start}, expected {pos} (in order)"
        count[start:start + length] += 1
        pos += length
    assert np.all(count == 1)  # every entry exactly once: no gap, no overlap
    n_layers = len(sizes) - 1
    for layer in range(n_layers):
        has_bn = batchnorm and layer < n_layers - 1
        assert spec.bn[layer] == has_bn
        if not has_bn:
            assert spec.g_off[layer] == -1 and spec.beta_off[layer] == -1
        # layer l's segment [seg_start[l], seg_start[l+1]) starts with W_l and ends its block
        assert spec.seg_start[layer] == spec.w_off[layer]
        last = spec.beta_off[layer] + sizes[layer + 1] if has_bn else \
            spec.b_off[layer] + sizes[layer + 1]
        assert spec.seg_start[layer + 1] == last
    assert spec.seg_start[n_layers] == n_params


@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_netspec_fields(sizes):
    spec, _ = build(sizes, True, loss=0)
    n_layers = len(sizes) - 1
    for name in SPEC_INT_FIELDS:
        field = getattr(spec, name)
        assert field.dtype == np.int64
        assert field.shape == (n_layers + (name in SPEC_PLUS_ONE),), name
    assert list(spec.sizes) == sizes
    assert list(spec.unit_start) == [0] + list(np.cumsum(sizes[1:]))
    assert list(spec.act_code) == list(range(10, 10 + n_layers))
    assert spec.act_param.dtype == np.float64
    assert np.array_equal(spec.act_param, [0.1 * (k + 1) for k in range(n_layers)])
    assert (spec.loss, spec.bn_eps, spec.bn_momentum) == (0, 1e-5, 0.1)
    # the int fields are consecutive views of one int64 buffer, in SPEC_INT_FIELDS order
    ints = spec.sizes.base
    assert ints.size == sum(getattr(spec, n).size for n in SPEC_INT_FIELDS)
    pos = 0
    for name in SPEC_INT_FIELDS:
        assert offset(getattr(spec, name), ints) == pos, name
        pos += getattr(spec, name).size


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_views_follow_the_layout(batchnorm):
    """The MLP's weights/biases/gammas/betas are the layout's segments: W row-major."""
    sizes = [3, 5, 4, 2]
    net = MLP(sizes, activation="tanh", batchnorm=batchnorm)
    spec, n_params = build(sizes, batchnorm)
    assert net.n_params == n_params
    net.params[...] = np.arange(n_params)
    for layer in range(len(sizes) - 1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        w0, b0 = spec.w_off[layer], spec.b_off[layer]
        assert np.array_equal(net.weights[layer],
                              np.arange(w0, w0 + n_out * n_in).reshape(n_out, n_in))
        assert np.array_equal(net.biases[layer], np.arange(b0, b0 + n_out))
        if spec.bn[layer]:
            assert np.array_equal(net.gammas[layer], np.arange(spec.g_off[layer],
                                                               spec.g_off[layer] + n_out))
            assert np.array_equal(net.betas[layer], np.arange(spec.beta_off[layer],
                                                              spec.beta_off[layer] + n_out))
        else:
            assert net.gammas[layer] is None and net.betas[layer] is None


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_netspec_pack_unpack_round_trip(sizes, batchnorm):
    spec, _ = build(sizes, batchnorm)
    packed = pack_netspec(spec)
    assert packed[0] is spec.sizes.base
    back = unpack_netspec(packed)
    assert isinstance(back, tuple) and back._fields == NetSpec._fields
    for name in NetSpec._fields:
        got, want = getattr(back, name), getattr(spec, name)
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and np.array_equal(got, want), name
            assert offset(got, packed[0] if name != "act_param" else want) == \
                offset(want, packed[0] if name != "act_param" else want), name
        else:
            assert got == want, name


@pytest.mark.parametrize("cap", [1, 16])
@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_workspace_bounds_and_views(sizes, cap):
    sizes = np.asarray(sizes)
    units, widest = int(sizes[1:].sum()), int(sizes.max())
    # x, y, then z, xhat, h, a, dz per unit, da, dh at the widest layer, bn mean/var per unit
    bounds = np.cumsum([0, cap * sizes[0], cap * sizes[-1]] + [cap * units] * 5 +
                       [cap * widest] * 2 + [units] * 2)
    got = workspace_bounds(sizes, cap)
    assert got.dtype == np.int64 and np.array_equal(got, bounds)
    assert len(got) == len(WORK_FIELDS) + 1
    for dtype in (np.float32, np.float64):
        work = allocate_workspace(sizes, cap, dtype)
        assert isinstance(work, Workspace) and work.cap == cap
        buf = work.x.base
        assert buf.size == bounds[-1] and buf.dtype == dtype
        for i, name in enumerate(WORK_FIELDS):
            view = getattr(work, name)
            assert view.dtype == dtype and view.base is buf, name
            assert view.size == bounds[i + 1] - bounds[i], name
            assert offset(view, buf) == bounds[i], name
            assert np.all(view == 0)
        assert work.seg_sq.dtype == np.float64 and work.seg_sq.shape == (len(sizes) - 1,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_workspace_pack_unpack_round_trip(dtype):
    sizes = np.asarray([3, 5, 4, 2])
    work = allocate_workspace(sizes, 8, dtype)
    packed = pack_workspace(work)
    back = unpack_workspace(packed)
    assert back._fields == Workspace._fields and back.cap == 8
    for name in WORK_FIELDS + ("seg_sq",):
        got, want = getattr(back, name), getattr(work, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.__array_interface__["data"][0] == want.__array_interface__["data"][0], name
    back.h[:] = 7.0  # the same memory: a write through the unpacked view shows in the original
    assert np.all(work.h == 7.0) and np.all(work.a == 0.0) and np.all(work.xhat == 0.0)


def test_pack_workspace_rejects_views_of_separate_buffers():
    work = allocate_workspace(np.asarray([3, 4, 2]), 4, np.float64)
    other = allocate_workspace(np.asarray([3, 5, 2]), 4, np.float64)
    for bad in (work._replace(x=np.zeros(work.x.size)), work._replace(x=other.x),
                work._replace(dz=work.dz.copy())):  # unpacking would ignore the copy
        with pytest.raises(ValueError, match="^workspace: expected the views of one buffer"):
            pack_workspace(bad)


@pytest.mark.parametrize("n_steps, n_layers", [(1, 1), (5, 3), (12, 2)])
def test_record_layout_and_round_trip(n_steps, n_layers):
    assert record_length(n_steps, n_layers) == n_steps * (N_STEP_FIELDS + N_LAYER_FIELDS *
                                                          n_layers)
    rec = allocate_record(n_steps, n_layers)
    assert isinstance(rec, Record)
    buf = rec.loss.base
    assert buf.dtype == np.float64 and buf.size == record_length(n_steps, n_layers)
    assert rec.status.dtype == np.int64 and rec.status.shape == (2,)
    pos = 0
    for i, name in enumerate(Record._fields[:-1]):
        view = getattr(rec, name)
        shape = (n_steps,) if i < N_STEP_FIELDS else (n_steps, n_layers)
        assert view.shape == shape and view.dtype == np.float64, name
        assert np.shares_memory(view, buf) and offset(view, buf) == pos, name
        assert np.all(view == 0)
        pos += view.size
    assert pos == buf.size  # consecutive, no gap or overlap, the whole buffer
    # record_views on a given buffer gives the same layout
    again = record_views(buf, rec.status, n_steps, n_layers)
    for name in Record._fields:
        assert getattr(again, name).__array_interface__["data"][0] == \
            getattr(rec, name).__array_interface__["data"][0], name
    packed = pack_record(rec)
    assert packed[0] is buf and packed[1] is rec.status and packed[2] == n_layers
    back = unpack_record(packed)
    for name in Record._fields:
        got, want = getattr(back, name), getattr(rec, name)
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert got.__array_interface__["data"][0] == want.__array_interface__["data"][0], name
    back.w_norm[-1, -1] = 3.0
    back.status[1] = 9
    assert rec.w_norm[-1, -1] == 3.0 and rec.status[1] == 9
    assert np.count_nonzero(buf) == 1


def test_pack_record_of_a_hand_built_record_is_none():
    rec = allocate_record(4, 2)
    assert pack_record(rec._replace(loss=np.zeros(4))) is None
    assert pack_record(rec._replace(w_update_norm=np.zeros((4, 2)))) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_stats_buffer(dtype):
    sizes = [3, 5, 4, 2]
    buf = running_stats_buffer(sizes, dtype)
    assert buf.dtype == dtype and buf.shape == (2 * 11,)
    assert np.all(buf[:11] == 0.0) and np.all(buf[11:] == 1.0)
