"""Reading a store: `load` verifies every part and run folder against its record, keeps each
run from the highest-ranked intact folder holding it, relabels runs stored under other
thresholds, and joins each table in Arrow, converting it to pandas once per schema."""
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from studies.analysis.labels import LABELS
from studies.store.files import (FINISHED, TABLES, TMP_PREFIX, rank, read_folder,
                                 record_runs)
from studies.store.store import Store, known_runs

FIRST_LABELS = LABELS  # first_<label> columns, one per label


class DamagedRunWarning(UserWarning):
    """Runs skipped by `load` because a table is missing, truncated or fails its checksum."""


@dataclass
class Results:
    """A study's tables: runs (one row per run), history (run_id, step, ...), layers
    (run_id, step, layer, ...), and the manifest dict."""
    runs: pd.DataFrame
    history: pd.DataFrame
    layers: pd.DataFrame
    manifest: dict
    path: str = ""


def _labelled_under(record, thresholds):
    """True when a folder's record says its runs were labelled under these thresholds."""
    from studies.analysis.labels import Thresholds
    if record is None or not isinstance(record.get("labels"), dict):
        return False
    try:
        return Thresholds.from_dict(record["labels"]) == thresholds
    except (TypeError, ValueError):
        return False


def _set_column(table, name, values):
    """table with column `name` replaced by values (its stored type kept) or appended."""
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, pa.array(values))
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values).cast(field.type))


def relabel_run(tables, thresholds):
    """One run's {table: pyarrow.Table} with the labels the runner would store under
    `thresholds`: the run's labels and first_<label> from label_run(history, layers, with the
    run's n_classes and loss), and
    each layer row's layer_labels ('label@first_step,...'). Failed runs are left as they are."""
    from studies.analysis.labels import format_labels, label_run
    run, history = tables["run"], tables["history"]
    if run.num_rows != 1 or "status" not in run.column_names or not history.num_rows or \
            run.column("status")[0].as_py() not in FINISHED:
        return tables
    layers = tables["layers"]
    lay = layers.drop_columns([c for c in ("layer_labels",) if c in layers.column_names])
    # None in a store written before runs recorded their task: K is read off a softmax output
    n_classes = _first(run, "n_classes")
    loss, variance = _first(run, "loss_function"), _first(run, "target_variance")
    run_labels, per_layer = label_run(history.to_pandas(), lay.to_pandas(), thresholds,
                                      n_classes, loss, variance)
    run = _set_column(run, "labels", [format_labels(run_labels)])
    for label in FIRST_LABELS:
        run = _set_column(run, f"first_{label}", [int(run_labels.get(label, -1))])
    text = {}
    for row in per_layer.itertuples():
        text.setdefault(int(row.layer), []).append(f"{row.label}@{int(row.first_step)}")
    if "layer" in layers.column_names:
        values = [",".join(text[k]) if k in text else None
                  for k in layers.column("layer").to_pylist()]
        layers = _set_column(layers, "layer_labels", pa.array(values, pa.string()))
    return {**tables, "run": run, "layers": layers}


def _first(table, column):
    """The first value of a column (None when the table lacks it)."""
    return table.column(column)[0].as_py() if column in table.column_names else None


def _rows_of(table, run_ids):
    """The rows of `table` whose run_id is in run_ids (all of them when it holds no other)."""
    if not table.num_rows or "run_id" not in table.column_names:
        return table
    column = table.column("run_id")
    return table.filter(pc.is_in(column, value_set=pa.array(run_ids).cast(column.type)))


def _per_run(tables, run_ids):
    """[{table: pyarrow.Table}] of each run of a folder's tables."""
    return [{name: _rows_of(tables[name], [r]) for name in TABLES} for r in run_ids]


def _typed_nulls(tables, untyped=None):
    """The tables with each all-null column (a value no run of a table had, e.g. the test
    accuracy of a run that diverged alone) cast to the type other tables give it, or to
    `untyped` when no table has a value (float64 for history and layers: a measurement
    switched off for the whole study reads as NaN), so a column reads the same however its
    runs were batched."""
    types = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, field.type)
    out = []
    for table in tables:
        for i, field in enumerate(table.schema):
            kind = types.get(field.name, untyped)
            if pa.types.is_null(field.type) and kind is not None:
                table = table.set_column(i, pa.field(field.name, kind),
                                         table.column(i).cast(kind))
        out.append(table)
    return out


def _concat(tables, untyped=None):
    """One DataFrame of the non-empty tables in order, equal to concatenating their pandas
    frames (pd.concat, ignore_index) once all-null columns are typed: tables of one schema are
    joined in Arrow and converted once; several schemas are converted per schema, joined, and
    put back in order."""
    tables = _typed_nulls([t for t in tables if t.num_rows], untyped)
    if not tables:
        return pd.DataFrame()
    groups = {}  # schema (without metadata) -> indices, in order of first appearance
    for i, table in enumerate(tables):
        groups.setdefault(table.schema.remove_metadata(), []).append(i)
    frames = [pa.concat_tables([tables[i] for i in members]).to_pandas()
              for members in groups.values()]
    if len(frames) == 1:
        return frames[0]
    starts = np.cumsum([0] + [t.num_rows for t in tables])
    positions = np.concatenate([np.arange(starts[i], starts[i + 1]) for members in
                                groups.values() for i in members])
    joined = pd.concat(frames, ignore_index=True)
    joined.index = positions
    return joined.sort_index().reset_index(drop=True)


def _by_run(frame):
    """Rows ordered by run_id, each run's rows in their stored order."""
    if "run_id" not in frame.columns or frame["run_id"].is_monotonic_increasing:
        return frame
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)


def _thresholds(thresholds):
    from studies.analysis.labels import Thresholds
    return thresholds if thresholds is None or isinstance(thresholds, Thresholds) \
        else Thresholds.from_dict(thresholds)


def _warn_damaged(root, damaged):
    count = sum(max(1, n) for _, _, n in damaged)
    shown = "; ".join(f"{name} ({problem}{f'; {n} runs' if n > 1 else ''})"
                      for name, problem, n in damaged[:5])
    more = f"; and {len(damaged) - 5} more folders" if len(damaged) > 5 else ""
    warnings.warn(f"{root}: skipped {count} damaged run(s): {shown}{more}; the next sweep of "
                  f"this store redoes them", DamagedRunWarning, stacklevel=3)


def load(path, thresholds=None):
    """A study's Results from its folder (the store is read only). A damaged part or run
    folder (a table missing, truncated or failing its checksum) is left out with one
    DamagedRunWarning naming it, unless newer intact parts hold all its runs. A run that
    several intact folders hold is taken from the highest-ranked one. thresholds: label
    thresholds (a dict of studies.analysis.labels.Thresholds keys, or a Thresholds); given,
    the labels, first_* and layer_labels of each run stored under other thresholds are
    recomputed from its stored history and layers, as the runner computes them (relabel_run)."""
    root = Path(path)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{path}: no results store here (expected {runs_dir})")
    thresholds = _thresholds(thresholds)
    read, damaged = [], []
    for folder in sorted(runs_dir.iterdir(), key=rank):
        if folder.name.startswith(TMP_PREFIX) or not folder.is_dir():
            continue
        try:
            tables, record = read_folder(folder)
        except ValueError as err:
            damaged.append((folder.name, str(err), known_runs(folder)))
            continue
        runs = record_runs(folder, record) if record is not None else {folder.name: None}
        read.append((folder, tables, record, list(runs)))
    won = {r: folder for folder, _, _, ids in read for r in ids}  # rank order: later wins
    parts = []
    for folder, tables, record, ids in read:
        keep = [r for r in ids if won[r] == folder]
        if not keep:
            continue
        if len(keep) < len(ids):
            tables = {name: _rows_of(tables[name], keep) for name in TABLES}
        if thresholds is not None and not _labelled_under(record, thresholds):
            runs = [relabel_run(t, thresholds) for t in _per_run(tables, keep)]
        else:
            runs = [tables]
        parts.extend((min(keep), t) for t in runs)
    lost = [(name, problem, len(known or ())) for name, problem, known in damaged
            if known is None or not all(r in won for r in known)]
    if lost:
        _warn_damaged(root, lost)
    parts.sort(key=lambda p: p[0])  # a schema's first appearance as in run_id order
    frames = {name: _by_run(_concat([t[name] for _, t in parts],
                                    None if name == "run" else pa.float64()))
              for name in TABLES}
    return Results(runs=frames["run"], history=frames["history"], layers=frames["layers"],
                   manifest=Store(root).read_manifest(), path=str(root))


def load_labelled(path, spec=None):
    """load(path) with labels under the thresholds of `spec` (a StudySpec), else of the spec
    the store was made from as its file reads now (studies.spec.store_thresholds); the
    manifest's spec then records those thresholds."""
    from studies.spec import store_thresholds
    manifest = Store(path).read_manifest()
    thresholds = dict(spec.labels) if spec is not None else store_thresholds(manifest)
    results = load(path, thresholds=thresholds)
    if isinstance(results.manifest.get("spec"), dict):
        results.manifest["spec"] = {**results.manifest["spec"], "labels": thresholds}
    return results
