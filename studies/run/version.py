"""The code version a run_id hashes: the sources that can change a stored number, and only
those. A change to any of them (a kernel, the CUDA engine, how a configuration is built, the
data, the chunk driver, the metrics, the labels) gives every run a new id, so a resumed sweep
reruns; an edit anywhere else (plots, report, theory, bench, cli, docs) reruns nothing.

NUMERIC_SOURCES is that list, as glob patterns relative to the repository root; a pattern that
matches no file is an error, so a renamed module cannot drop out of the hash unnoticed.
"""
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "gradlab-0.1.0"
NUMERIC_SOURCES = (
    "kernels/**/*.py",               # CPU and CUDA kernels and their Python API
    "studies/config.py",             # configuration keys, defaults, network/optimizer builders
    "studies/data/*.py",             # data sets, files, splits, standardization
    "studies/run/execute.py",        # the chunk driver
    "studies/run/record.py",         # what a run records, its summary row
    "studies/run/curvature_log.py",  # its curvature and gradient-noise columns
    "studies/run/group.py",          # which runs train together
    "studies/run/device.py",         # the CUDA engine's records
    "studies/analysis/metrics.py",   # layer statistics
    "studies/analysis/labels.py",    # pathology labels and divergence thresholds
)


def source_files(root=ROOT):
    """The files of NUMERIC_SOURCES under `root`, as sorted relative POSIX paths."""
    root = Path(root)
    files = set()
    for pattern in NUMERIC_SOURCES:
        matched = [p for p in root.glob(pattern) if p.is_file()]
        if not matched:
            raise ValueError(f"NUMERIC_SOURCES: {pattern!r} matches no file under {root}")
        files.update(p.relative_to(root).as_posix() for p in matched)
    return sorted(files)


def code_version(root=ROOT):
    """'gradlab-0.1.0-<12 hex digits>': sha256 over the names and bytes of source_files."""
    digest = hashlib.sha256()
    for name in source_files(root):
        digest.update(name.encode() + b"\0")
        digest.update((Path(root) / name).read_bytes() + b"\0")
    return f"{PREFIX}-{digest.hexdigest()[:12]}"


CODE_VERSION = code_version()
