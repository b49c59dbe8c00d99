"""Figures (studies/plots) on a hand-built store: the key numbers, diverged and failed runs shown
as such, every file written, and `gradlab plot` end to end with its user errors."""
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

from _plot_store import DIVERGED, DIVERGED_AT, FAILED, FIGURES, expected_ratio, make_store
from studies import plots
from studies.cli.main import main
from studies.plots import Figure, current, draw, figure, figure_names
from studies.plots import style
from studies.plots import vanishing as V
from studies.store import load

DIVERGED_KEY = f"{'/'.join(map(str, DIVERGED))}/seed0"
FAILED_KEY = f"{'/'.join(map(str, FAILED))}/seed0"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("plots") / "vanishing")


@pytest.fixture(scope="module")
def results(store):
    return current(load(store))


@pytest.fixture(scope="module")
def drawn(results):
    """Every vanishing figure, drawn once (closed after the module)."""
    out = {name: getattr(V, fn)(results) for name, fn in
           (("vanishing_profiles", "profiles"), ("vanishing_ratio", "ratio"),
            ("vanishing_heatmap", "heatmap"))}
    yield {name: figs[0] for name, figs in out.items()}
    plt.close("all")


def test_ratio_numbers_match_the_store(drawn):
    numbers = drawn["vanishing_ratio"].numbers
    assert numbers["deepest"] == 6
    assert numbers["worst"] == "sigmoid/glorot_standard/6"
    for key, value in numbers["ratio_step0"].items():
        activation, init, depth = key.split("/")
        assert value == pytest.approx(expected_ratio(activation, init, int(depth)), rel=1e-5)
    # two seeds of the worst configuration, both labelled vanishing at step 0
    assert numbers["first_vanishing"] == {"sigmoid/glorot_standard/6/seed0": 0,
                                          "sigmoid/glorot_standard/6/seed1": 0}
    caption = drawn["vanishing_ratio"].caption
    assert style.fmt(expected_ratio("sigmoid", "glorot_standard", 6)) in caption
    assert "vanishing label" in caption and "2 of 13 runs" in caption


def test_contrast_in_caption_names_the_range_of_others(drawn):
    caption = drawn["vanishing_profiles"].caption
    low = style.fmt(expected_ratio("sigmoid", "xavier_normal", 6))
    assert f"against {low} (sigmoid + Xavier normal)" in caption
    assert "to 1 (ReLU + He normal)" in caption


def test_diverged_run_is_shown_and_named(drawn):
    for fig in drawn.values():
        assert any(DIVERGED_KEY in d and f"step {DIVERGED_AT}" in d
                   for d in fig.numbers["diverged"]), fig.stem
        assert "Diverged (1" in fig.caption or "diverged" in fig.caption.lower()
    # profiles: the panel after the divergence says so; a non-finite layer gets a cross
    axes = drawn["vanishing_profiles"].fig.axes
    relu_last = [ax for ax in axes if ax.get_title().startswith("ReLU, step 30")]
    assert relu_last and "diverged before" in relu_last[0].get_title()
    crosses = [line for ax in axes for line in ax.get_lines() if line.get_marker() == "x"]
    assert crosses
    # ratio: a cross at the diverged depth in the ReLU panel
    relu = [ax for ax in drawn["vanishing_ratio"].fig.axes if ax.get_title() == "ReLU"][0]
    xs = [x for line in relu.get_lines() if line.get_marker() == "x"
          for x in line.get_xdata()]
    assert DIVERGED[2] in xs
    # heatmap: hatched steps after the divergence in its panel
    heat = [ax for ax in drawn["vanishing_heatmap"].fig.axes
            if ax.get_title().startswith("ReLU + standard")]
    assert heat and any(p.get_hatch() for p in heat[0].patches)
    assert drawn["vanishing_heatmap"].numbers["panels"][
        "relu/glorot_standard/6"]["status"] == "diverged"


def test_failed_run_is_counted(drawn):
    for fig in drawn.values():
        if "failed" in fig.numbers:
            assert fig.numbers["failed"] == [FAILED_KEY]
    assert "Failed without data (1)" in drawn["vanishing_profiles"].caption


def test_axes_are_labelled_and_log_scaled(drawn):
    profiles = drawn["vanishing_profiles"].fig
    grid = np.array(profiles.axes[:9]).reshape(3, 3)  # 3 steps x 3 activations
    assert all(ax.get_yscale() == "log" for ax in grid.ravel())
    assert all(ax.get_ylabel() for ax in grid[:, 0])
    assert all(ax.get_xlabel() for ax in grid[-1])
    ratio = drawn["vanishing_ratio"].fig.axes
    assert all(ax.get_yscale() == "log" and ax.get_xlabel() for ax in ratio)
    assert ratio[0].get_ylabel()
    heat = [ax for ax in drawn["vanishing_heatmap"].fig.axes if ax.get_visible()]
    assert any("log" in ax.get_ylabel() for ax in heat)  # the colorbar
    for fig in drawn.values():
        width, _ = fig.fig.get_size_inches()
        assert width <= style.FULL_WIDTH + 1e-9
        assert fig.fig.legends or fig.stem == "vanishing_heatmap"  # legends outside panels


def test_zero_gradients_are_marked_not_dropped(tmp_path):
    results = current(load(make_store(tmp_path / "v", zero=("relu", "he_normal", 6))))
    fig = V.ratio(results)[0]
    assert fig.numbers["zero_gradient"] == ["relu/he_normal/6/seed0"]
    relu = [ax for ax in fig.fig.axes if ax.get_title() == "ReLU"][0]
    assert any(line.get_marker() == "v" for line in relu.get_lines())
    assert "exactly zero" in fig.caption
    heat = V.heatmap(results)[0]
    assert heat.numbers["panels"]["relu/he_normal/6"]["first_layer_last"] == 0
    plt.close("all")


def test_draw_writes_png_and_pdf_for_every_listed_figure(results, tmp_path):
    made = draw(results, tmp_path)
    assert [fig.stem for fig, _, _ in made] == FIGURES
    for fig, png, pdf in made:
        assert isinstance(fig, Figure) and fig.caption
        with open(png, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        with open(pdf, "rb") as handle:
            assert handle.read(5) == b"%PDF-"
        assert (tmp_path / f"{fig.stem}.png").stat().st_size > 5000
    assert not plt.get_fignums()  # saved figures are closed


def test_draw_unknown_name_raises_or_is_collected(results, tmp_path):
    with pytest.raises(ValueError, match="unknown name.*known"):
        draw(results, tmp_path, ["no_such_figure"])
    errors = []
    made = draw(results, tmp_path, ["no_such_figure", "vanishing_ratio"], errors=errors)
    assert [f.stem for f, _, _ in made] == ["vanishing_ratio"]
    assert errors and errors[0][0] == "no_such_figure"


def test_a_failing_figure_is_collected_with_its_error(results, tmp_path):
    @figure("_test_broken")
    def broken(results):
        style.new_figure()
        raise RuntimeError("boom")
    try:
        errors = []
        assert draw(results, tmp_path, ["_test_broken"], errors=errors) == []
        assert "RuntimeError: boom" in errors[0][1]
        assert not plt.get_fignums()
        with pytest.raises(RuntimeError):
            draw(results, tmp_path, ["_test_broken"])
    finally:
        plots.FIGURES.pop("_test_broken", None)
        plt.close("all")


def test_current_keeps_only_the_latest_sweep(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    shutil.copytree(copy / "runs" / "run001sig2", copy / "runs" / "other_scale_run")
    import pandas as pd
    for name in ("run", "history", "layers"):
        path = copy / "runs" / "other_scale_run" / f"{name}.parquet"
        frame = pd.read_parquet(path)
        frame["run_id"] = "other_scale_run"
        frame.to_parquet(path, index=False)
    everything = load(copy)
    latest = current(everything)
    assert len(everything.runs) == len(latest.runs) + 1
    assert "other_scale_run" not in set(latest.layers["run_id"])


def test_figure_names_fall_back_to_the_bundled_spec(tmp_path):
    root = make_store(tmp_path / "v", figures=[])
    assert figure_names(load(root)) == FIGURES  # the bundled vanishing.toml lists them


def test_style_helpers():
    assert style.fmt(2.34e-17) == "2.34e-17"
    assert style.fmt(0.04667) == "0.0467"
    assert style.fmt(1000.0) == "1000"
    assert style.fmt(float("nan")) == "n/a" and style.fmt(None) == "n/a"
    assert style.fmt(float("inf")) == "inf" and style.fmt(0) == "0"
    assert style.display("he_normal") == "He normal" and style.display("x") == "x"
    assert style.color_for("activation", "relu") == style.ACTIVATION_COLORS["relu"]
    fig, axes = style.new_figure()
    line = style.seed_band(axes[0, 0], [1, 2], [[1e-4, 1.0], [1e-2, 1.0]], "red",
                           geometric=True)[0]
    assert np.allclose(line.get_ydata(), [1e-3, 1.0])
    legend = style.legend_rows(fig, [[line], [line, line]])
    assert len(legend.get_texts()) == 4  # two columns x two rows (one blank)
    plt.close(fig)


def test_gradlab_plot_end_to_end(store, capsys):
    assert main(["plot", str(store)]) == 0
    out = capsys.readouterr().out
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = store / "figures" / f"{stem}.{ext}"
            assert path.stat().st_size > 1000
            assert str(path) in out
    assert "||dL/dW_1||" in out  # captions are printed


def test_gradlab_plot_out_and_only(store, tmp_path):
    out = tmp_path / "figs"
    assert main(["plot", str(store), "--out", str(out), "--only", "vanishing_ratio"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["vanishing_ratio.pdf",
                                                     "vanishing_ratio.png"]


def test_gradlab_plot_user_errors_exit_2(tmp_path, store, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no results store" in capsys.readouterr().err
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "holds no runs" in capsys.readouterr().err
    assert main(["plot", str(store), "--only", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown name(s) ['nope']" in capsys.readouterr().err
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["spec"]["figures"] == FIGURES  # the store is only read
