"""Study specs: parsing, grid expansion, scales, and every validation error."""
import pytest

from studies.config import FIELDS, resolve
from studies.spec import SpecError, bundled_specs, load_spec, parse_spec

BASE = {"name": "demo", "fixed": {"dataset": "digits", "steps": 10},
        "axes": {"activation": ["tanh", "relu"], "lr": [0.1, 0.01, 0.001]}, "seeds": [0, 1]}


def spec(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    raw.update(changes)
    return parse_spec(raw, "demo.toml")


def test_grid_is_the_cartesian_product_times_seeds():
    grid = spec().grid("quick")
    assert len(grid) == 2 * 3 * 2
    assert {(c["activation"], c["lr"], c["seed"]) for c in grid} == {
        (a, lr, s) for a in ("tanh", "relu") for lr in (0.1, 0.01, 0.001) for s in (0, 1)}
    assert all(c["steps"] == 10 and c["dataset"] == "digits" for c in grid)
    assert set(grid[0]) == set(FIELDS)  # fully resolved with defaults


def test_scales_override_fixed_axes_and_seeds():
    s = spec(scales={"smoke": {"seeds": [5], "fixed": {"steps": 2, "lr": 0.5},
                               "axes": {"activation": ["gelu"]}}})
    smoke = s.grid("smoke")
    assert [(c["activation"], c["lr"], c["seed"], c["steps"]) for c in smoke] == [
        ("gelu", 0.5, 5, 2)]
    assert len(s.grid("full")) == 12  # scales without overrides use the base


@pytest.mark.parametrize("changes,message", [
    (dict(nmae="x"), r"demo.toml: unknown key 'nmae' \(did you mean 'name'\?\)"),
    (dict(fixed={"activaton": "relu"}), r"\[fixed\]: unknown key 'activaton' \(did you mean "
                                        r"'activation'\?\)"),
    (dict(fixed={"activation": "tanhh"}), r"\[fixed\]: activation = 'tanhh' is not allowed "
                                          r"\(did you mean 'tanh'\?\); expected one of"),
    (dict(axes={"lr": [0.1, -1.0]}), r"\[axes\]: lr = -1.0: expected a value > 0"),
    (dict(axes={"lr": 0.1}), r"\[axes\]: lr = 0.1: an axis needs a non-empty list"),
    (dict(axes={"depth": [2, 2.5]}), r"\[axes\]: depth = 2.5: expected an integer"),
    (dict(axes={"batchnorm": [True, "yes"]}), r"batchnorm = 'yes': expected true or false"),
    (dict(axes={"activation": ["relu", "relu"]}), "repeated values"),
    (dict(fixed={"lr": 0.1}, axes={"lr": [0.1, 0.2]}), "'lr' is both fixed and swept"),
    (dict(seeds=[]), "seeds = \\[\\]: expected a non-empty list"),
    (dict(seeds=[0, 0]), "repeated seeds"),
    (dict(fixed={"seed": 1}), "seed: use the top-level 'seeds' list"),
    (dict(scales={"medium": {}}), r"unknown scale 'medium'"),
    (dict(scales={"smoke": {"steps": 3}}), r"\[scales.smoke\]: unknown key 'steps' \(put it "
                                          r"under \[scales.smoke.fixed\]\)"),
    (dict(labels={"vanishing_ration": 1e-3}), r"\[labels\]:.*vanishing_ration"),
    (dict(name="has space"), "name = 'has space': expected an identifier"),
    (dict(fixed={"init": "naive_normal"}), "init = 'naive_normal' needs init_scale"),
])
def test_validation_errors_name_file_key_value_and_allowed(changes, message):
    with pytest.raises(SpecError, match=message):
        spec(**changes)


def test_files_and_bundled_names(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[fixed\n")
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match=r"'vanishng' is neither a bundled study \(did you mean "
                                        r"'vanishing'\?\)"):
        load_spec("vanishng")
    good = tmp_path / "good.toml"
    good.write_text('name = "good"\nseeds = [3]\n[fixed]\nsteps = 4\n[axes]\ndepth = [1, 2]\n')
    assert [c["depth"] for c in load_spec(good).grid("smoke")] == [1, 2]


def test_every_bundled_spec_parses_at_every_scale():
    assert "vanishing" in bundled_specs()
    for name in bundled_specs():
        s = load_spec(name)
        sizes = [len(s.grid(scale)) for scale in ("smoke", "quick", "full")]
        assert 0 < sizes[0] <= sizes[1] <= sizes[2], (name, sizes)


def test_resolve_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key 'widht'"):
        resolve({"widht": 3})


def test_keys_a_choice_does_not_use_are_reset_so_identical_runs_share_a_run_id():
    from studies.run.runner import plan
    s = spec(axes={"clip": ["none", "global_norm"], "clip_threshold": [1.0, 5.0],
                   "optimizer": ["sgd", "adam"], "beta1": [0.9, 0.8]}, seeds=[0])
    tasks = plan(s, "quick")
    # clip none x 2 thresholds collapse; sgd x 2 beta1 collapse: (1 + 2) x (1 + 2) runs
    assert len(tasks) == 9
    assert all(t.config["clip_threshold"] == 1.0 for t in tasks if t.config["clip"] == "none")
    assert all(t.config["beta1"] == 0.9 for t in tasks if t.config["optimizer"] == "sgd")


def test_the_figure_names_specs_may_use_are_the_registered_ones():
    from studies.plots import known_figures
    from studies.spec import _declared_figures, figure_choices
    assert sorted(_declared_figures()) == known_figures()  # read from the sources: registered
    assert figure_choices() == known_figures()
    with pytest.raises(SpecError, match=r"figures: unknown name 'vanishing_rati' \(did you "
                                        r"mean 'vanishing_ratio'\?\); allowed: activation_"):
        spec(figures=["vanishing_rati"])
    assert spec(figures=["vanishing_ratio"]).figures == ["vanishing_ratio"]
