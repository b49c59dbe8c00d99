"""Fresh compile against cached load: run one script in two new processes sharing an empty
Numba cache (the first compiles and fills it, the second loads from it) and return what each
printed, so a test can compare the bits."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_and_cached(code, cache_dir, **env):
    """(stdout of the compiling process, stdout of the loading process) of `code` run with
    NUMBA_CACHE_DIR=cache_dir (and `env`) from the repository root."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT), **env)

    def run():
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True, timeout=300).stdout

    fresh = run()
    return fresh, run()
