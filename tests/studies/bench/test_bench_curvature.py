"""The curvature rows of the benchmark: every implementation validates, ours gets the ratios."""
from studies.bench.curvature import cost_in_gradients, curvature_rows


def test_curvature_rows_validate_and_time_every_implementation():
    rows = curvature_rows(dtypes=("float32", "float64"), nets=[([5, 8, 3], 6)],
                          min_sample=1e-4, repeats=1)
    impls = {(r["group"], r["dtype"], r["impl"]) for r in rows}
    for dtype in ("float32", "float64"):
        assert {i for g, d, i in impls if g == "hvp" and d == dtype} == \
            {"gradlab", "torch_double_backward", "torch_func_jvp_grad"}
        assert {i for g, d, i in impls if g == "per_example_norms" and d == dtype} == \
            {"gradlab", "torch_func_vmap_grad"}
    assert all(r["valid"] and r["median_s"] > 0 for r in rows), [r["error"] for r in rows]
    ours = [r for r in rows if r["impl"] == "gradlab"]
    assert all("ratio_torch_func_vmap_grad" in r or "ratio_torch_double_backward" in r
               for r in ours)


def test_cost_in_gradients_reports_ratios():
    (row,) = cost_in_gradients(nets=[([5, 8, 3], 6)], dtypes=("float64",), calls=3)
    assert row["hvp_in_grads"] > 0 and row["min_per_example_in_grads"] > 0


def test_markdown_names_each_peer_with_its_ratio():
    from studies.bench.curvature import markdown
    rows = [{"group": "hvp", "shape": "s", "dtype": "float64", "impl": "gradlab",
             "median_s": 1e-4, "ratio_torch_double_backward": 4.0},
            {"group": "hvp", "shape": "s", "dtype": "float64", "impl": "torch_double_backward",
             "median_s": 4e-4}]
    cost = [{"sizes": "s", "batch": 2, "dtype": "float64", "hvp_in_grads": 1.5,
             "min_hvp_in_grads": 1.4, "per_example_in_grads": 0.9,
             "min_per_example_in_grads": 0.8, "hvp_kernel_in_grad_kernels": 2.0,
             "min_hvp_kernel_in_grad_kernels": 1.9}]
    text = markdown(rows, cost)
    assert "| hvp | s | float64 | 100.0 | torch double backward | 400.0 | 4.00 |" in text
    assert "| s B=2 | float64 | 1.50 (1.40) | 0.90 (0.80) | 2.00 (1.90) |" in text
