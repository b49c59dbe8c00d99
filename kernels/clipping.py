"""Gradient clipping over the flat gradient buffer, split into per-layer segments.

- global_norm (Pascanu et al. 2013; as `torch.nn.utils.clip_grad_norm_`): g *= min(1, c/(||g|| + 1e-6))
- layer_norm: the same rule applied to each layer's parameters (W, b, gamma, beta) separately
- value (as `torch.nn.utils.clip_grad_value_`): g = clamp(g, -c, c)
"""
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._jit import kernel
from .registry import Entry, build_registry
from .validation import check_choice

NO_CLIP, GLOBAL_NORM, LAYER_NORM, VALUE = range(4)
CLIP_EPS = 1e-6


@dataclass(frozen=True, kw_only=True)
class ClipInfo(Entry):
    """Registry entry: code, formula; per_layer: the rule reads each layer's norm apart."""
    per_layer: bool = False


CLIPPING = build_registry([
    ClipInfo(name="none", code=NO_CLIP, formula="g"),
    ClipInfo(name="global_norm", code=GLOBAL_NORM, formula="g min(1, c/(||g|| + 1e-6))"),
    ClipInfo(name="layer_norm", code=LAYER_NORM, formula="g_l min(1, c/(||g_l|| + 1e-6))",
             per_layer=True),
    ClipInfo(name="value", code=VALUE, formula="clamp(g, -c, c)"),
])


@dataclass(frozen=True)
class Clip:
    """A clipping mode by name and its threshold c."""
    mode: str = "none"
    threshold: float = 0.0

    def __post_init__(self):
        check_choice("clip mode", self.mode, CLIPPING)
        # the threshold reaches the kernels as a float: refuse bools, strings, None and
        # non-finite values here with a ValueError naming it (not a TypeError later)
        c = self.threshold
        positive = self.mode != "none"  # "none" ignores it but it must still be a number >= 0
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or \
                not (c > 0 if positive else c >= 0):
            expected = "a positive finite number" if positive else "a non-negative finite number"
            raise ValueError(f"clip threshold: expected {expected}, got {c!r}")
        object.__setattr__(self, "threshold", float(c))

    @property
    def code(self):
        return CLIPPING[self.mode].code


def make_clip(name="none", threshold=None):
    """A Clip from its registry name and threshold c (the one factory: specs, the CLI and the
    bench build clipping here); "none" ignores the threshold."""
    check_choice("clip mode", name, CLIPPING)
    if name == "none":
        return Clip()
    if threshold is None:
        raise ValueError(f"clip threshold: clip {name!r} needs a positive threshold")
    return Clip(name, threshold)


def GlobalNorm(max_norm):
    return Clip("global_norm", max_norm)


def LayerNorm(max_norm):
    return Clip("layer_norm", max_norm)


def Value(clip_value):
    return Clip("value", clip_value)


@kernel
def scale_segment(g, lo, hi, factor):
    """g[lo:hi] *= factor, in g's dtype (as torch multiplies by a coefficient tensor); unsigned
    bounds so the loop vectorizes."""
    f = g.dtype.type(factor)
    for i in range(np.uint64(lo), np.uint64(hi)):
        g[i] *= f


@kernel
def clamp_segment(g, lo, hi, c):
    """g[lo:hi] = clamp(g, -c, c) in place; returns the sum of squares after clamping."""
    hi_c = g.dtype.type(c)
    lo_c = -hi_c
    after = 0.0
    for i in range(np.uint64(lo), np.uint64(hi)):
        x = g[i]
        x = hi_c if x > hi_c else x  # selects keep a NaN a NaN
        x = lo_c if x < lo_c else x
        g[i] = x
        after += float(x) * float(x)
    return after


@kernel
def clip_coefficients(seg_sq, code, c, coefs):
    """The factor of each segment (coefs[l], 1 when unchanged) of the global- or layer-norm
    rule from seg_sq[l] = ||g_l||^2; returns the global norm after clipping (the norm before
    for `none`, and for `value`, whose norm after needs the clamped values)."""
    n_seg = seg_sq.shape[0]
    total = 0.0
    for s in range(n_seg):
        total += seg_sq[s]
        coefs[s] = 1.0
    norm = math.sqrt(total)
    if code == GLOBAL_NORM:
        coef = c / (norm + CLIP_EPS)
        if coef < 1.0:
            for s in range(n_seg):
                coefs[s] = coef
            return norm * coef
        return norm
    if code == LAYER_NORM:
        after = 0.0
        for s in range(n_seg):
            seg_norm = math.sqrt(seg_sq[s])
            coef = c / (seg_norm + CLIP_EPS)
            if coef < 1.0:
                coefs[s] = coef
                seg_norm *= coef
            after += seg_norm * seg_norm
        return math.sqrt(after)
    return norm


@kernel
def clip_range(grads, lo, hi, seg_start, coefs, code, c):
    """Clips grads[lo:hi] in place: each segment's part times coefs[l] (clip_coefficients), or
    clamped to [-c, c] for `value`, which returns the sum of squares after clamping (else 0)."""
    if code == VALUE:
        return clamp_segment(grads, lo, hi, c)
    if code == GLOBAL_NORM or code == LAYER_NORM:
        for s in range(coefs.shape[0]):
            if coefs[s] < 1.0:
                scale_segment(grads, max(lo, seg_start[s]), min(hi, seg_start[s + 1]), coefs[s])
    return 0.0


@kernel
def clip_gradients(grads, seg_start, seg_sq, code, c):
    """Clips grads in place; seg_sq[l] = ||g_l||^2 for segment [seg_start[l], seg_start[l+1]).

    Returns the global norm after clipping.
    """
    n_seg = seg_sq.shape[0]
    coefs = np.empty(n_seg)
    norm = clip_coefficients(seg_sq, code, c, coefs)
    after_sq = clip_range(grads, seg_start[0], seg_start[n_seg], seg_start, coefs, code, c)
    return math.sqrt(after_sq) if code == VALUE else norm


def clip_reference(grad_segments, mode, c):
    """Clipped copies of a list of float64 gradient segments (NumPy)."""
    segs = [np.asarray(g, np.float64).copy() for g in grad_segments]
    if mode == "global_norm":
        norm = math.sqrt(sum(float((g * g).sum()) for g in segs))
        coef = min(1.0, c / (norm + CLIP_EPS))
        return [g * coef for g in segs]
    if mode == "layer_norm":
        return [g * min(1.0, c / (np.linalg.norm(g) + CLIP_EPS)) for g in segs]
    if mode == "value":
        return [np.clip(g, -c, c) for g in segs]
    return segs
