"""Every CLI error is one line on stderr: user errors (specs, files, stores, arguments) exit 2
naming the argument and what was expected; an unexpected exception exits 1 as an internal
error, with its traceback under --debug."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studies.cli import study as study_module
from studies.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
BASE = 'name = "mini"\n[fixed]\ndataset = "blobs"\nsteps = 4\nmetrics_every = 2\nwidth = 8\n'


def gradlab(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "studies.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def call(capsys, *args):
    """main(args) in this process: (exit code, the one stderr line or '', stdout)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, (one_line(captured.err) if captured.err.strip() else ""), captured.out


def spec_file(tmp_path, top="", body=BASE, name="spec.toml"):
    path = tmp_path / name
    path.write_text(top + "\n" + body if top else body)
    return path


@pytest.mark.parametrize("top,message", [
    ("figures = 5", "figures = 5: expected a list of figure names"),
    ('figures = ["vanishing_ratio", "nope"]', "figures: unknown name 'nope'; allowed: "
                                              "activation_functions,"),
    ('figures = ["vanishng_ratio"]', "(did you mean 'vanishing_ratio'?)"),
    ("scales = {smoke = 5}", "[scales.smoke]: smoke = 5: expected a table"),
    ("scales = 5", "scales = 5: expected a table of smoke/quick/full tables"),
    ("labels = 5", "[labels] = 5: expected a table of thresholds"),
    ('labels = "abc"', "[labels] = 'abc': expected a table of thresholds"),
    ("labels = {dead_fraction = [1]}", "thresholds.dead_fraction: expected a positive finite"),
    ("description = 3", "description = 3: expected a string"),
    ("section = 8", "section = 8: expected a string"),
    ('seeds = "0"', "seeds = '0': expected a non-empty list"),
    ("seeds = [0.5]", "seeds = [0.5]: expected a non-empty list of non-negative integers"),
    ("axes = 3", "[axes]: expected a table of key = [values], got 3"),
    ("axes = {width = 3}", "width = 3: an axis needs a non-empty list"),
    ("nmae = 3", "unknown key 'nmae' (did you mean 'name'?)"),
])
def test_every_top_level_key_is_type_checked(tmp_path, capsys, top, message):
    code, line, _ = call(capsys, "run", str(spec_file(tmp_path, top)), "--out",
                         str(tmp_path / "out"))
    assert code == 2 and line.startswith("gradlab run: error: ") and "spec.toml" in line, line
    assert message in line, line
    assert not (tmp_path / "out").exists()  # nothing ran


def test_name_and_fixed_must_be_of_their_types(tmp_path, capsys):
    code, line, _ = call(capsys, "run", str(spec_file(tmp_path, body="name = 3\n")))
    assert code == 2 and "name = 3: expected an identifier-like string" in line
    code, line, _ = call(capsys, "run", str(spec_file(tmp_path, body='name = "x"\nfixed = 3\n')))
    assert code == 2 and "[fixed]: expected a table of configuration keys, got 3" in line


@pytest.mark.parametrize("depth,message", [
    (3000, "nested too deeply (at most 32 levels)"),   # tomllib would recurse past the limit
    (40, "nested deeper than 32 levels"),
])
def test_deep_nesting_is_rejected(tmp_path, capsys, depth, message):
    path = tmp_path / "deep.toml"
    path.write_text('name = "x"\n[fixed]\ndataset_options = {a = ' + "[" * depth + "]" * depth
                    + "}\n")
    code, line, _ = call(capsys, "run", str(path))
    assert code == 2 and message in line and "deep.toml" in line, line


def test_a_spec_that_is_not_utf8_names_its_file(tmp_path, capsys):
    path = tmp_path / "latin.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    code, line, _ = call(capsys, "run", str(path))
    assert code == 2 and f"{path}: not UTF-8 text (byte 0xe9" in line, line


@pytest.mark.parametrize("dataset,message", [
    ("/nonexistent/data.npz", "dataset = '/nonexistent/data.npz': no such file or directory"),
    ("/dev/null", "dataset = '/dev/null': not a regular file"),
    ("{tmp}", "a folder must hold the MNIST IDX files; missing train-images-idx3-ubyte"),
    ("{tmp}/data.txt", "unknown file type"),
    ("mnist2d", "dataset = 'mnist2d': unknown dataset (did you mean 'mnist1d'?)"),
])
def test_dataset_files_are_checked_before_any_run(tmp_path, capsys, dataset, message):
    (tmp_path / "data.txt").write_text("1,2\n")
    dataset = dataset.format(tmp=tmp_path)
    path = spec_file(tmp_path, body=BASE.replace('"blobs"', f'"{dataset}"'))
    code, line, _ = call(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and message in line, line
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_writable_folder(tmp_path, capsys):
    spec = spec_file(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, line, _ = call(capsys, "run", str(spec), "--out", str(a_file))
    assert code == 2 and f"--out {a_file}: expected a folder for the results store, but it " \
        "is a file" in line, line
    # a path under a file fails even for root, which chmod cannot stop
    code, line, _ = call(capsys, "run", str(spec), "--out", str(a_file / "sub"))
    assert code == 2 and f"--out {a_file / 'sub'}: expected a writable folder" in line and \
        "Not a directory" in line, line
    if os.geteuid() != 0:  # permissions only bind a non-root user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, line, _ = call(capsys, "run", str(spec), "--out", str(locked / "out"))
        assert code == 2 and "Permission denied" in line, line


def test_argument_checks(tmp_path, capsys):
    code, line, _ = call(capsys, "train", "--dataset", "digits", "--every", "0")
    assert code == 2 and line == "gradlab train: error: --every: expected a positive number " \
        "of epochs, got 0"
    code, line, _ = call(capsys, "run", str(spec_file(tmp_path)), "--wait", "-1")
    assert code == 2 and "--wait: expected seconds >= 0" in line
    with pytest.raises(SystemExit) as exit_:
        main(["run", "x", "--scale", "huge"])
    assert exit_.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert "invalid choice: 'huge'" in line and "--help" in line


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    def broken(args):
        return {}["labels"]
    monkeypatch.setattr(study_module, "list_command", broken)
    code, line, _ = call(capsys, "list")
    assert code == 1 and line == "gradlab list: internal error: KeyError: 'labels' (rerun " \
        "with --debug for the traceback)"
    assert main(["list", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1].startswith("gradlab list: internal error: KeyError")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store of two completed runs and one of two failed runs, made by the real CLI."""
    root = tmp_path_factory.mktemp("cli")
    good = root / "good.toml"
    good.write_text('figures = ["vanishing_ratio"]\n' + BASE + '[axes]\nactivation = '
                    '["tanh", "relu"]\n')
    bad = root / "bad.toml"
    bad.write_text('name = "bad"\nfigures = ["vanishing_ratio"]\n[fixed]\ndataset = "digits"\n'
                   'steps = 4\nn_samples = 5000\n[axes]\nactivation = '
                   '["tanh", "relu"]\n')
    done = gradlab("run", str(good), "--out", str(root / "good"), "--workers", "0", "--quiet")
    assert done.returncode == 0, done.stderr
    failed = gradlab("run", str(bad), "--out", str(root / "bad"), "--workers", "0", "--quiet")
    return root, failed


def test_a_sweep_where_every_run_failed_says_so_in_one_line(stores):
    root, failed = stores
    assert failed.returncode == 2  # every error is the data's: a user error
    line = one_line(failed.stderr)
    assert line.startswith("gradlab run: all 2 runs failed; first error: DatasetError: "
                           "digits: n_samples=5000 but only 1797 samples"), line
    assert "status: failed 2" in failed.stdout


def test_show_lists_failed_runs_and_their_errors(stores, capsys):
    root, _ = stores
    code, line, out = call(capsys, "show", str(root / "bad"))
    assert code == 0 and line == ""
    assert "status: failed 2" in out and "failed runs (2):" in out
    assert out.count("DatasetError: digits: n_samples=5000") == 2


def test_plot_errors(stores, capsys, tmp_path):
    root, _ = stores
    code, line, _ = call(capsys, "plot", str(root / "bad"))
    assert code == 2 and f"{root / 'bad'}: no completed runs to draw (2 failed" in line, line
    code, line, _ = call(capsys, "plot", str(root / "good"), "--only", "he_signal")
    assert code == 2 and line == "gradlab plot: error: --only: 'he_signal' not among the " \
        "figures of study 'mini'; expected some of: vanishing_ratio"
    code, line, _ = call(capsys, "plot", str(root / "good"), "--only", "he_sign")
    assert code == 2 and "unknown name(s) ['he_sign']" in line
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, line, _ = call(capsys, "plot", str(root / "good"), "--out", str(a_file))
    assert code == 2 and f"--out {a_file}: expected a folder for the figures, but it is a " \
        "file" in line
    code, line, _ = call(capsys, "plot", str(root / "good"), "--out", str(a_file / "sub"))
    assert code == 2 and f"--out {a_file / 'sub'}: cannot write the figures" in line, line
    code, line, out = call(capsys, "plot", str(root / "good"), "--out", str(tmp_path / "f"),
                           "--no-pdf", "--dpi", "40")
    assert code == 0 and (tmp_path / "f" / "vanishing_ratio.png").is_file(), line


def test_a_damaged_run_is_one_warning_line(stores, capsys, tmp_path):
    import shutil
    root, _ = stores
    copy = tmp_path / "copy"
    shutil.copytree(root / "good", copy)
    run_id = sorted(p.name for p in (copy / "runs").iterdir())[0]
    (copy / "runs" / run_id / "layers.parquet").write_bytes(b"")
    code, line, out = call(capsys, "show", str(copy))
    assert code == 0 and line.startswith("gradlab: warning: ") and run_id in line
    assert "status: completed 1" in out
