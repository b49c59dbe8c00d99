"""The gradlab command: train, run, list, show; user errors exit 2 with one line, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from studies.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def gradlab(*args):
    return subprocess.run([sys.executable, "-m", "studies.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_train_prints_learning_curve_and_layer_norms(capsys):
    code = main(["train", "--dataset", "digits", "--hidden", "32,32", "--epochs", "3",
                 "--every", "1", "--dtype", "float64", "--batch-size", "64"])
    out = capsys.readouterr().out
    assert code == 0
    assert "epoch" in out and "train" in out and "test" in out
    assert out.count("\n     ") >= 3  # one line per epoch
    assert "per-layer gradients at step" in out and "||dW||" in out
    assert "final test accuracy" in out
    accuracy = float(out.strip().splitlines()[-1].split()[-1])
    assert accuracy > 0.5


def test_train_records_divergence_without_crashing(capsys):
    code = main(["train", "--dataset", "digits", "--hidden", "32", "--epochs", "5",
                 "--optimizer", "sgd", "--lr", "1e6", "--dtype", "float64"])
    assert code == 0
    out = capsys.readouterr().out
    assert "diverged at optimizer step" in out and "the step was not applied" in out
    cause = out.split("diverged at optimizer step")[1].split(":")[1].split(";")[0].strip()
    assert cause.startswith("non-finite")
    table = [line for line in out.split("update/W\n")[1].splitlines()
             if line.split() and line.split()[0].isdigit()]
    # the refused step changed no weight: no norm or update ratio is shown for it
    assert table and all(line.split()[-2:] == ["-", "-"] for line in table)


@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "mnist2d"], "unknown dataset 'mnist2d'"),
    (["train", "--dataset", "digits", "--lr", "-1"], "lr: expected a positive number"),
    (["train", "--dataset", "digits", "--clip", "global_norm"], "--clip: expected MODE:THRESHOLD"),
    (["train", "--dataset", "digits", "--clip", "norm:1"], "clip mode: unknown name 'norm'"),
    (["train", "--dataset", "digits", "--hidden", "a,b"], "--hidden: expected comma-separated"),
    (["train", "--dataset", "/nonexistent/file.npz"], "file.npz"),
    (["run", "vanishng"], "did you mean 'vanishing'"),
    (["run", "/nonexistent/spec.toml"], "no such spec file"),
    (["show", "/nonexistent/results"], "no results store"),
])
def test_user_errors_exit_2_with_one_line(args, message):
    result = gradlab(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0]


def test_argparse_errors_exit_2():
    result = gradlab("train", "--activation", "swish")
    assert result.returncode == 2 and "invalid choice: 'swish'" in result.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["run"], ["list"], ["show"]])
def test_help_everywhere(command):
    result = gradlab(*command, "--help")
    assert result.returncode == 0 and "usage: gradlab" in result.stdout


def test_list_names_bundled_studies_with_descriptions():
    result = gradlab("list")
    assert result.returncode == 0
    assert any(line.startswith("vanishing ") and "depth" in line
               for line in result.stdout.splitlines())


def test_run_then_show(tmp_path):
    spec = tmp_path / "mini.toml"
    spec.write_text('name = "mini"\n[fixed]\ndataset = "blobs"\nsteps = 6\nmetrics_every = 3\n'
                    'width = 8\n[axes]\nactivation = ["tanh", "relu"]\n')
    out = tmp_path / "out"
    result = gradlab("run", str(spec), "--out", str(out), "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert "2 completed" in result.stdout and "runs/min" in result.stdout
    assert "2/2" not in result.stderr  # no progress bar when not a terminal
    shown = gradlab("show", str(out))
    assert shown.returncode == 0 and "status: completed 2" in shown.stdout


def test_run_prints_the_first_rows_of_a_large_sweep_and_show_prints_all(tmp_path, capsys):
    from studies.cli.study import RUN_TABLE_ROWS
    seeds = RUN_TABLE_ROWS // 2 + 3  # two activations: six runs more than the table shows
    spec = tmp_path / "many.toml"
    spec.write_text(f'name = "many"\nseeds = {list(range(seeds))}\n[fixed]\ndataset = "blobs"\n'
                    'n_samples = 120\nsteps = 2\nmetrics_every = 1\nwidth = 4\n'
                    '[axes]\nactivation = ["tanh", "relu"]\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    printed = capsys.readouterr().out
    def table_rows(text):
        return [line for line in text.splitlines() if line.split()[:1] in (["tanh"], ["relu"])]
    assert len(table_rows(printed)) == RUN_TABLE_ROWS
    assert f"... 6 more runs (gradlab show {out} lists every run)" in printed
    assert f"status: completed {2 * seeds}" in printed
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert len(table_rows(shown)) == 2 * seeds and "more runs" not in shown
