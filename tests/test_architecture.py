"""The shape of the code: imports point one way with no cycles (imports inside functions
counted), no module over 500 lines, at most 12 modules at the top of studies/, every module has
a test module, and the project's files speak only of the project."""
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_imports", ROOT / "scripts" / "check_imports.py")
check_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_imports)

# Modules whose behaviour one named test module exercises as a whole: the CUDA kernels only run
# under the simulator or a GPU, through the CUDA API; the figure, bench, CLI and report modules
# through their package's test; the fused step, the epoch loop and the NumPy reference through
# the gradient and training tests; the chunk driver through the runner's grouped and alone
# sweeps; the data readers through the dataset tests.
COVERED_BY = {
    "kernels/cuda/": "tests/kernels/test_cuda.py",
    "kernels/step.py": "tests/kernels/test_mlp_gradients.py",
    "kernels/split_stages.py": "tests/kernels/test_split_step.py",
    "kernels/reference.py": "tests/kernels/test_mlp_gradients.py",
    "kernels/training.py": "tests/kernels/test_multirun.py",
    "studies/plots/": "tests/studies/plots/test_plots.py",
    "studies/bench/": "tests/studies/bench/test_bench.py",
    "studies/cli/": "tests/studies/cli/test_cli.py",
    "studies/report/": "tests/studies/report/test_report.py",
    "studies/analysis/findings/": "tests/studies/analysis/test_findings.py",
    "studies/data/": "tests/studies/data/test_datasets.py",
    "studies/run/execute.py": "tests/studies/run/test_group.py",
    "studies/run/record.py": "tests/studies/run/test_group.py",
    "studies/run/device.py": "tests/kernels/test_cuda.py",
    "studies/store/": "tests/studies/test_store.py",
}


def test_no_import_cycles():
    assert check_imports.cycles(check_imports.import_graph()) == []


def test_the_checker_sees_cycles_through_function_level_imports(tmp_path, monkeypatch):
    for name, body in {"a": "def f():\n    from pkg import b\n", "b": "from pkg.a import f\n"}.items():
        (tmp_path / "pkg").mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"{name}.py").write_text(body)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    monkeypatch.setattr(check_imports, "ROOT", tmp_path)
    monkeypatch.setattr(check_imports, "PACKAGES", ("pkg",))
    assert check_imports.cycles(check_imports.import_graph()) == [["pkg.a", "pkg.b"]]


def test_kernels_import_nothing_of_studies():
    assert check_imports.upward_imports(check_imports.import_graph()) == []


def test_no_module_over_500_lines():
    assert check_imports.long_modules(500) == []


def test_studies_top_level_holds_at_most_12_modules():
    top = sorted(p.name for p in (ROOT / "studies").glob("*.py"))
    assert len(top) <= 12, top


def _test_module_for(path: Path) -> Path:
    relative = path.relative_to(ROOT)
    return ROOT / "tests" / relative.parent / f"test_{relative.stem.lstrip('_')}.py"


def test_every_module_has_its_test_module():
    missing = []
    for package in check_imports.PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            relative = path.relative_to(ROOT).as_posix()
            covering = next((test for prefix, test in COVERED_BY.items()
                             if relative.startswith(prefix)), None)
            target = ROOT / covering if covering else _test_module_for(path)
            if not target.exists():
                missing.append(f"{relative} -> {target.relative_to(ROOT)}")
    assert missing == [], "modules without a test module:\n" + "\n".join(missing)


PROCESS_WORDS = re.compile(r"\bissues?[- ]?#?\d+|\bthe issue'?s?\b|\btickets?\b"
                           r"|\b(REPORT|REFERENCE|DESIGN)\.md\b", re.IGNORECASE)


def _tracked_files():
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listing.returncode != 0:
        pytest.fail(f"git ls-files failed: {listing.stderr.strip()}")
    return [ROOT / name for name in listing.stdout.split()
            if name.endswith((".py", ".md", ".toml", ".sh", ".cfg", ".txt"))]


def test_files_speak_only_of_the_project():
    offenders = []
    for path in _tracked_files():
        if path == Path(__file__).resolve() or not path.exists():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PROCESS_WORDS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:90]}")
    assert offenders == [], "\n".join(offenders)


def test_docs_cite_only_files_the_repository_has():
    cited = re.compile(r"`((?:docs|kernels|studies|scripts|tests)/[\w./-]+)`")
    dangling = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in cited.findall(path.read_text(encoding="utf-8")):
            if not (ROOT / name.rstrip("/")).exists() and "<" not in name:
                dangling.append(f"{path.name}: {name}")
    assert dangling == [], dangling
