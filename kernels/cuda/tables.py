"""The small tables that describe a network to the CUDA kernels, and the slots of their buffers.

Device buffers of a group of R runs (R = 1 for a single network):
- state (4, R, n_params): THETA (parameters), GRAD, MOM1 (m), MOM2 (v): the CPU flat layout
  (kernels.layout), one row per run.
- units (6, R, cap * units): per-unit workspaces Z, XHAT, H (batch-norm output), A, DZ, DH
  (dL/dh before batch norm); layer l's (batch, n_out) block starts at U_OFF = cap * unit_start[l].
- running (R, 2 * units): running means, then running variances (as MLP.running).
- bnstat (2, R, units): batch mean and biased variance of the last training batch.
- xin (1 or R, >= batch * n_0), yin (1 or R, >= batch * n_L): the batch (one row shared by all
  runs, or one per run).
- tstat (R, 3) int64: T (optimizer steps taken), FLAG (1 once a step was non-finite), FLAG_STEP.
- ctrl (R, layers + 1) float64: per-layer clip coefficients of the current step, then its lr.
- rec (2, R, steps) float64: loss and global gradient norm (before clipping) per step.
- part (R, chunks) float64: partial sums of squared gradients, one per parameter chunk.
"""
import numpy as np

# Columns of the int64 layer table `net` (one row per layer).
(N_IN, N_OUT, W_OFF, B_OFF, G_OFF, BETA_OFF, SEG_LO, SEG_HI, U_OFF, UNIT, IN_OFF, ACT, BN, LOSS,
 PART_LO, PART_HI) = range(16)
N_FIELDS = 16
# Columns of the float64 layer table `netf`.
ACT_PARAM, BN_EPS, BN_MOM = range(3)
# Slots of `state`, `units`, `tstat`, `rec` and `bnstat`.
THETA, GRAD, MOM1, MOM2 = range(4)
S_Z, S_XHAT, S_H, S_A, S_DZ, S_DH = range(6)
T, FLAG, FLAG_STEP = range(3)
REC_LOSS, REC_NORM = range(2)
MEAN, VAR = range(2)
# Columns of the chunk table `chunks` (one row per block of the norm and update kernels).
CH_LAYER, CH_LO, CH_HI = range(3)


def chunk_table(spec, chunk):
    """Splits every layer segment [seg_start[l], seg_start[l+1]) into chunks of <= `chunk`
    parameters: rows (layer, lo, hi), and each layer's range of rows (first, end)."""
    rows, first, end = [], [], []
    for layer in range(len(spec.sizes) - 1):
        lo, hi = int(spec.seg_start[layer]), int(spec.seg_start[layer + 1])
        first.append(len(rows))
        for start in range(lo, hi, chunk):
            rows.append((layer, start, min(hi, start + chunk)))
        end.append(len(rows))
    return np.asarray(rows, np.int64).reshape(-1, 3), first, end


def layer_tables(spec, cap, chunk):
    """(net, netf, chunks) for a NetSpec and a workspace of `cap` rows per layer block."""
    n_layers = len(spec.sizes) - 1
    chunks, first, end = chunk_table(spec, chunk)
    net = np.zeros((n_layers, N_FIELDS), np.int64)
    netf = np.zeros((n_layers, 3), np.float64)
    for layer in range(n_layers):
        row = net[layer]
        row[N_IN], row[N_OUT] = spec.sizes[layer], spec.sizes[layer + 1]
        row[W_OFF], row[B_OFF] = spec.w_off[layer], spec.b_off[layer]
        row[G_OFF], row[BETA_OFF] = spec.g_off[layer], spec.beta_off[layer]
        row[SEG_LO], row[SEG_HI] = spec.seg_start[layer], spec.seg_start[layer + 1]
        row[U_OFF], row[UNIT] = cap * spec.unit_start[layer], spec.unit_start[layer]
        row[IN_OFF] = 0 if layer == 0 else cap * spec.unit_start[layer - 1]
        row[ACT], row[BN], row[LOSS] = spec.act_code[layer], spec.bn[layer], spec.loss
        row[PART_LO], row[PART_HI] = first[layer], end[layer]
        netf[layer] = spec.act_param[layer], spec.bn_eps, spec.bn_momentum
    return net, netf, chunks
