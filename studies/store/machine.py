"""What a manifest records of the code and machine that made a store."""
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def provenance():
    """Versions, git commit and machine for a manifest."""
    versions = {}
    for package in ("numpy", "numba", "scipy", "pandas", "pyarrow", "mnist1d", "scikit-learn",
                    "dask", "distributed", "torch", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": sys.version.split()[0], "versions": versions, "git_commit": commit,
            "machine": {"host": socket.gethostname(), "platform": platform.platform(),
                        "processor": platform.machine(), "cpus": os.cpu_count()}}
