"""The code version a run_id hashes covers exactly the sources that can change a stored number:
an edit to a plot, the report, the CLI or the README keeps every id; an edit to the chunk
driver, a CUDA kernel, the data or the labels changes them."""
import shutil

import pytest

from studies.run.version import NUMERIC_SOURCES, ROOT, code_version, source_files


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    for folder in ("kernels", "studies"):
        shutil.copytree(ROOT / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "README.md", root / "README.md")
    return root


def _edited(tree, name, text="\n# an edit\n"):
    path = tree / name
    original = path.read_bytes()
    path.write_bytes(original + text.encode())
    try:
        return code_version(tree)
    finally:
        path.write_bytes(original)


def test_the_copied_tree_has_the_running_code_version(tree):
    assert code_version(tree) == code_version(ROOT)


@pytest.mark.parametrize("name", ["studies/plots/__init__.py", "studies/report/build.py",
                                  "studies/cli/main.py", "studies/bench/runner.py",
                                  "studies/theory/mean_field.py", "studies/run/runner.py",
                                  "studies/run/progress.py", "README.md"])
def test_an_edit_that_cannot_change_a_number_keeps_the_version(tree, name):
    assert (tree / name).exists()
    assert _edited(tree, name) == code_version(tree)


@pytest.mark.parametrize("name", ["studies/run/execute.py", "studies/run/record.py",
                                  "studies/run/device.py", "kernels/cuda/step.py",
                                  "kernels/multirun.py", "studies/config.py",
                                  "studies/data/files.py", "studies/analysis/metrics.py",
                                  "studies/analysis/labels.py"])
def test_an_edit_that_can_change_a_number_changes_the_version(tree, name):
    assert _edited(tree, name) != code_version(tree)


def test_the_list_is_explicit_and_a_missing_source_is_an_error(tree, tmp_path):
    files = source_files(tree)
    assert "kernels/cuda/step.py" in files and "studies/run/execute.py" in files
    assert not any(f.startswith(("studies/plots/", "studies/cli/", "studies/report/",
                                 "studies/bench/", "studies/theory/")) for f in files)
    assert len(NUMERIC_SOURCES) == len(set(NUMERIC_SOURCES))
    partial = tmp_path / "partial"
    shutil.copytree(tree / "kernels", partial / "kernels")
    with pytest.raises(ValueError, match="NUMERIC_SOURCES: 'studies/config.py' matches no file"):
        code_version(partial)
    added = tree / "kernels" / "cuda" / "new_kernel.py"
    added.write_text("x = 1\n")
    try:
        assert code_version(tree) != code_version(ROOT)  # a new kernel file counts too
    finally:
        added.unlink()
