"""The measurements behind the critical_batch and lr_range findings, on made-up numbers."""
import math

import numpy as np
import pandas as pd

from studies.analysis.findings.batching import at_target, blown_up, crossing, fit_tradeoff, \
    range_suggestion


def test_crossing_interpolates_in_log_loss():
    assert crossing([0, 10, 20], [1.0, 0.4, 0.1], 0.2) == 10 + 10 * math.log(2) / math.log(4)
    assert crossing([0, 10], [0.05, 0.01], 0.1) == 0.0
    assert math.isnan(crossing([0, 10], [1.0, 0.5], 0.1))


def test_at_target_reads_the_noise_where_the_loss_crosses():
    loss = np.array([1.0, 0.4, 0.1, np.nan])
    noise = np.array([10.0, 40.0, 160.0, 5.0])
    assert math.isclose(at_target(loss, noise, 0.2), 80.0)   # halfway in log loss: geometric
    assert math.isnan(at_target(np.array([1.0, 0.9]), np.array([1.0, 2.0]), 0.1))


def test_fit_recovers_the_tradeoff_and_its_knee():
    b = np.array([8, 16, 32, 64, 128, 256], float)
    s_min, e_min = 10.0, 1200.0
    s = s_min * (1 + (e_min / s_min) / b)                    # S = S_min (1 + B_crit / B)
    fit = fit_tradeoff(b, s)
    assert np.allclose(fit[:3], [s_min, e_min, e_min / s_min]) and fit[3] < 1e-12
    e = b * s                                                # the hyperbola holds exactly
    assert np.allclose((s / s_min - 1) * (e / e_min - 1), 1.0)
    assert all(math.isnan(v) for v in fit_tradeoff(b[:2], s[:2]))


def test_range_suggestion_stops_at_the_blow_up():
    lr = np.geomspace(1e-3, 10, 9)
    loss = np.array([5.0, 4.0, 2.0, 1.0, 0.5, 30.0, 0.3, 0.2, 50.0])   # spike, then lower
    assert blown_up(loss) == 5
    best, tenth, steep = range_suggestion(pd.DataFrame({"lr": lr, "loss": loss}))
    assert best == lr[4] and math.isclose(tenth, lr[4] / 10)
    assert math.isclose(steep, math.sqrt(lr[1] * lr[2]))   # the largest fall per decade
