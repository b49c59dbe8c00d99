"""Tests for kernels.clipping: the flat-buffer kernel and the NumPy reference against
torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (global, per layer, by value), the returned
post-clip norm, clipping inside the fused MLP.train_step against torch, and threshold checks."""
import math

import numpy as np
import pytest
import torch

from _torch_helpers import random_batch
from _torch_twin import (torch_flat_grads, torch_flat_params, torch_forward_backward,
                         torch_linears, torch_twin)
from kernels.tolerance import assert_close
from kernels import MLP
from kernels.clipping import (CLIP_EPS, CLIPPING, Clip, GlobalNorm, LayerNorm, Value,
                              clip_gradients, clip_reference)
from kernels.layout import build_netspec
from kernels.optimizers import SGD, Adam, Momentum

SIZES = [5, 8, 6, 3]
LAYER_SCALES = [0.3, 2.0, 6.0]  # per-layer gradient scales: layer norms about 2, 14, 25


def layout():
    """seg_start of the flat layout of SIZES and the (W, b) shapes of each layer."""
    spec, n = build_netspec(SIZES, [0] * 3, [0.0] * 3, False, 0, 1e-5, 0.1)
    shapes = [[(SIZES[i + 1], SIZES[i]), (SIZES[i + 1],)] for i in range(len(SIZES) - 1)]
    return spec.seg_start, shapes, n


def random_grads(rng):
    seg_start, shapes, n = layout()
    g = np.empty(n)
    for layer, scale in enumerate(LAYER_SCALES):
        lo, hi = seg_start[layer], seg_start[layer + 1]
        g[lo:hi] = scale * rng.normal(size=hi - lo)
    return g


def segment_sq(g, seg_start):
    return np.array([np.sum(g[lo:hi] ** 2) for lo, hi in zip(seg_start[:-1], seg_start[1:])])


def torch_groups(g):
    """One [W, b] list of torch Parameters (grads set from g) per layer."""
    seg_start, shapes, _ = layout()
    groups = []
    for layer, (w_shape, b_shape) in enumerate(shapes):
        lo = seg_start[layer]
        mid = lo + math.prod(w_shape)
        group = []
        for (a, b), shape in (((lo, mid), w_shape), ((mid, seg_start[layer + 1]), b_shape)):
            p = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
            p.grad = torch.from_numpy(g[a:b].copy()).reshape(shape)
            group.append(p)
        groups.append(group)
    return groups


def torch_clip(g, mode, c):
    """(clipped flat grads, norm before, norm after) by torch.nn.utils."""
    groups = torch_groups(g)
    params = [p for group in groups for p in group]
    if mode == "global_norm":
        before = float(torch.nn.utils.clip_grad_norm_(params, c))
    elif mode == "layer_norm":
        norms = [float(torch.nn.utils.clip_grad_norm_(group, c)) for group in groups]
        before = math.sqrt(sum(n * n for n in norms))
    else:
        before = float(np.linalg.norm(g))
        torch.nn.utils.clip_grad_value_(params, c)
    flat = np.concatenate([p.grad.numpy().ravel() for p in params])
    return flat, before, float(np.linalg.norm(flat))


def kernel_clip(g, mode, c):
    seg_start, _, _ = layout()
    out = g.copy()
    after = clip_gradients(out, seg_start, segment_sq(g, seg_start), CLIPPING[mode].code, c)
    return out, after


def reference_clip(g, mode, c):
    seg_start, _, _ = layout()
    segs = [g[lo:hi] for lo, hi in zip(seg_start[:-1], seg_start[1:])]
    return np.concatenate(clip_reference(segs, mode, c))


# thresholds relative to the quantity each mode clips (global norm, layer norms, |g_i|)
KERNEL_CASES = [
    ("global_norm", "far below the norm", lambda g: 0.1 * np.linalg.norm(g)),
    ("global_norm", "just below the norm", lambda g: 0.999 * np.linalg.norm(g)),
    # torch scales by c/(norm + 1e-6) whenever that is below 1, even for c slightly above the
    # norm: so do we
    ("global_norm", "within 1e-6 above the norm", lambda g: np.linalg.norm(g) + 0.5 * CLIP_EPS),
    ("global_norm", "above the norm", lambda g: 2.0 * np.linalg.norm(g)),
    ("layer_norm", "between the layer norms", lambda g: 5.0),
    ("layer_norm", "below every layer norm", lambda g: 0.5),
    ("layer_norm", "above every layer norm", lambda g: 1e3),
    ("value", "inside the range", lambda g: 1.0),
    ("value", "above every entry", lambda g: 1.01 * np.abs(g).max()),
]


def kernel_case_id(case):
    return f"{case[0]}-{case[1].replace(' ', '_')}"


@pytest.mark.parametrize("case", KERNEL_CASES, ids=kernel_case_id)
def test_kernel_matches_torch(case):
    mode, _, threshold = case
    rng = np.random.default_rng(30)
    for trial in range(5):
        g = random_grads(rng)
        c = float(threshold(g))
        want, before, after = torch_clip(g, mode, c)
        got, got_after = kernel_clip(g, mode, c)
        assert_close(got, want, np.float64, f"{mode} c={c:g} grads", strict=True)
        assert_close(got_after, after, np.float64, f"{mode} norm after", strict=True)
        assert_close(reference_clip(g, mode, c), want,
                     np.float64, f"{mode} reference", strict=True)
        changed = not np.array_equal(want, g)
        if mode == "global_norm":
            assert_close(before, np.linalg.norm(g),
                         np.float64, "torch norm before", strict=True, atol=0.0)
            assert changed == (c / (before + CLIP_EPS) < 1.0)
        if not changed:  # below the threshold: untouched, bit for bit
            assert np.array_equal(got, g) and got_after == pytest.approx(before, rel=1e-14)


def test_layer_norm_clips_only_the_layers_above_the_threshold():
    """With c = 5 between the layer norms, big layers end at norm ~c, small ones untouched."""
    rng = np.random.default_rng(30)
    seg_start, _, _ = layout()
    g = random_grads(rng)
    norms = np.sqrt(segment_sq(g, seg_start))
    assert norms.min() < 5.0 < norms.max()
    got, after = kernel_clip(g, "layer_norm", 5.0)
    got_norms = np.sqrt(segment_sq(got, seg_start))
    for layer, (lo, hi) in enumerate(zip(seg_start[:-1], seg_start[1:])):
        if norms[layer] < 5.0:
            assert np.array_equal(got[lo:hi], g[lo:hi])
        else:
            assert_close(got_norms[layer], 5.0 * norms[layer] / (norms[layer] + CLIP_EPS),
                         np.float64, f"layer {layer} norm after", strict=True, atol=0.0)
    assert_close(after, np.linalg.norm(got), np.float64, "returned norm", strict=True, atol=0.0)


def test_none_leaves_grads_and_returns_the_norm():
    rng = np.random.default_rng(31)
    g = random_grads(rng)
    got, after = kernel_clip(g, "none", 0.0)
    assert np.array_equal(got, g)
    assert_close(after, np.linalg.norm(g), np.float64, "norm", strict=True, atol=0.0)


@pytest.mark.parametrize("mode, c", [("global_norm", 3.0), ("layer_norm", 5.0), ("value", 0.5)])
def test_kernel_float32_grads(mode, c):
    rng = np.random.default_rng(32)
    g = random_grads(rng).astype(np.float32)
    seg_start, _, _ = layout()
    out = g.copy()
    after = clip_gradients(out, seg_start, segment_sq(g.astype(np.float64), seg_start),
                           CLIPPING[mode].code, c)
    want, _, want_after = torch_clip(g.astype(np.float64), mode, c)
    assert out.dtype == np.float32
    assert_close(out, want, np.float32, f"{mode} float32", strict=True)
    assert_close(after, want_after, np.float32, f"{mode} float32 norm after", strict=True)


# ---------------------------------------------------------------- through the fused step

TRAIN_CASES = [("global_norm", 4.0, "sgd"), ("layer_norm", 3.0, "sgd"), ("value", 1.5, "sgd"),
               ("global_norm", 4.0, "momentum-wd"), ("layer_norm", 3.0, "adam")]


def make_pair(kind, params):
    """Our optimizer and the torch one over `params` (weight decay added after clipping in
    both: torch.optim adds it inside step())."""
    if kind == "sgd":
        return SGD(0.1), torch.optim.SGD(params, lr=0.1)
    if kind == "momentum-wd":
        return (Momentum(0.05, 0.9, weight_decay=0.05),
                torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.05))
    return (Adam(0.01, eps_inside_sqrt=False), torch.optim.Adam(params, lr=0.01))


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: f"{c[0]}-{c[1]:g}-{c[2]}")
def test_train_step_clipping_matches_torch(case):
    mode, c, kind = case
    rng = np.random.default_rng(33)
    net = MLP(SIZES, activation="tanh", loss="mse", dtype="float64", seed=2)
    model = torch_twin(net)
    opt, topt = make_pair(kind, model.parameters())
    clip = Clip(mode, c)
    linears = torch_linears(model)
    clipped_steps = 0
    for step in range(50):
        x, y = random_batch(rng, net, 8)
        y *= math.exp(rng.normal())  # spread the gradient norms over the threshold
        net.train_step(x, y, opt, clip=clip)
        stats = net.last_step_stats()
        torch_forward_backward(model, "mse", x, y)
        raw = torch_flat_grads(model)
        if mode == "global_norm":
            before = float(torch.nn.utils.clip_grad_norm_(model.parameters(), c))
        elif mode == "layer_norm":
            before = math.sqrt(sum(float(torch.nn.utils.clip_grad_norm_(lin.parameters(), c))
                                   ** 2 for lin in linears))
        else:
            before = float(np.linalg.norm(raw))
            torch.nn.utils.clip_grad_value_(model.parameters(), c)
        after = float(np.linalg.norm(torch_flat_grads(model)))
        clipped_steps += not np.array_equal(raw, torch_flat_grads(model))
        topt.step()
        assert_close(stats["grad_norm"], before,
                     np.float64, f"grad_norm, step {step}", strict=True)
        assert_close(stats["grad_norm_clipped"], after,
                     np.float64, f"grad_norm_clipped, step {step}", strict=True)
        assert_close(net.params, torch_flat_params(model),
                     np.float64, f"params after step {step}", strict=True)
    # the threshold was crossed in both directions during the run
    assert 5 <= clipped_steps <= 45, f"clipping acted on {clipped_steps} of 50 steps"


def test_train_step_clipping_changes_the_trajectory():
    """The same run with and without clipping ends in different places (clip reaches the
    update), and 'none' reports grad_norm_clipped == grad_norm."""
    rng = np.random.default_rng(34)
    x, y = random_batch(rng, MLP(SIZES, activation="tanh", loss="mse"), 16)
    ends = {}
    for clip in (None, GlobalNorm(0.1)):
        net = MLP(SIZES, activation="tanh", loss="mse", dtype="float64", seed=2)
        opt = SGD(0.1)
        for _ in range(5):
            net.train_step(x, 3 * y, opt, clip=clip)
            stats = net.last_step_stats()
            if clip is None:
                assert stats["grad_norm_clipped"] == stats["grad_norm"]
            else:
                assert stats["grad_norm_clipped"] == pytest.approx(0.1, rel=1e-5)
        ends[clip] = net.params.copy()
    assert np.abs(ends[None] - ends[GlobalNorm(0.1)]).max() > 1e-2


# ---------------------------------------------------------------- threshold checks


@pytest.mark.parametrize("build", [
    lambda: GlobalNorm(0.0), lambda: GlobalNorm(-1.0), lambda: GlobalNorm(math.nan),
    lambda: GlobalNorm(math.inf), lambda: GlobalNorm("1.0"), lambda: GlobalNorm(None),
    lambda: LayerNorm(0), lambda: LayerNorm(-math.inf), lambda: LayerNorm([1.0]),
    lambda: Value(0.0), lambda: Value(True), lambda: Clip("value"), lambda: Clip("value", "1"),
    lambda: Clip("global_norm", -2.0), lambda: Clip("none", -1.0),
])
def test_bad_threshold_raises_naming_it(build):
    with pytest.raises(ValueError, match=r"^clip threshold: expected a (positive|non-negative) "
                                         r"finite number, got "):
        build()


def test_bad_mode_and_clip_argument():
    with pytest.raises(ValueError, match="^clip mode: unknown name 'norm'"):
        Clip("norm", 1.0)
    with pytest.raises(ValueError, match="^clip mode: unknown name"):
        Clip(["global_norm"], 1.0)
    net = MLP([2, 3, 1], activation="tanh", loss="mse")
    with pytest.raises(ValueError, match="^clip: expected a kernels.clipping.Clip"):
        net.train_step(np.ones((2, 2)), np.ones((2, 1)), SGD(0.1), clip=1.0)


def test_builders_store_float_thresholds():
    for clip, mode in ((GlobalNorm(2), "global_norm"), (LayerNorm(np.float32(0.5)), "layer_norm"),
                       (Value(3), "value"), (Clip(), "none")):
        assert clip.mode == mode and type(clip.threshold) is float
        assert clip.code == CLIPPING[mode].code
