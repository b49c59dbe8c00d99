"""Shared test settings: a project-local Numba cache unless the caller chose one."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
