"""Compares two study stores column by column, bit for bit (any NaN equals any NaN).

    python scripts/compare_stores.py A B [--ignore COLUMN ...]

Runs are matched by their configuration (the manifest's grid), not by run_id, so stores made by
different code versions compare. Ignored always: run_id and what is not a result of training
(train_time, compile_time, wall_time, attempts, traceback); --ignore adds columns (e.g.
group_size when one store was trained grouped and the other alone). Prints the differing
columns per table and exits 1 if any differ, else prints one line and exits 0.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import studies  # noqa: E402

IGNORED = ("run_id", "train_time", "compile_time", "wall_time", "attempts", "traceback")
ORDER = {"runs": ["key"], "history": ["key", "step"], "layers": ["key", "step", "layer"]}


def keyed(results):
    """The three tables with run_id replaced by the JSON of the run's configuration."""
    keys = {entry["run_id"]: json.dumps(entry["config"], sort_keys=True, default=str)
            for entry in results.manifest.get("grid", [])}
    tables = {}
    for name in ORDER:
        frame = getattr(results, name).copy()
        frame.insert(0, "key", frame["run_id"].map(keys))
        if frame["key"].isna().any():
            raise SystemExit(f"{results.path}: {name} holds runs missing from the manifest grid")
        tables[name] = frame
    return tables


def same_column(a, b):
    """Equal bit for bit (floats by their bits; NaN equals NaN), else False."""
    if len(a) != len(b):
        return False
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
        nan = np.isnan(x)
        return bool(np.array_equal(nan, np.isnan(y))
                    and np.array_equal(x[~nan].view(np.uint64), y[~nan].view(np.uint64)))
    if a.dtype != b.dtype:
        return False
    return bool(a.fillna("<NA>").astype(str).equals(b.fillna("<NA>").astype(str))) \
        if a.dtype == object else bool(a.equals(b))


def compare(path_a, path_b, ignore=()):
    """{table: [differing column, ...]} of two stores (empty lists: identical)."""
    a, b = keyed(studies.load(path_a)), keyed(studies.load(path_b))
    skip = set(IGNORED) | set(ignore)
    out = {}
    for name, order in ORDER.items():
        ta = a[name].sort_values(order).reset_index(drop=True)
        tb = b[name].sort_values(order).reset_index(drop=True)
        columns = [c for c in dict.fromkeys([*ta.columns, *tb.columns]) if c not in skip]
        out[name] = [c for c in columns if c not in ta or c not in tb
                     or not same_column(ta[c], tb[c])]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--ignore", nargs="*", default=[], help="more columns to skip")
    args = parser.parse_args(argv)
    differing = compare(args.a, args.b, args.ignore)
    if any(differing.values()):
        for name, columns in differing.items():
            if columns:
                print(f"{name}: {', '.join(columns)}")
        return 1
    print(f"{args.a} and {args.b}: identical (runs, history, layers; bit for bit)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
