"""The store's folders on disk: completion records, their checks, and reading and writing the
three tables of a folder.

A folder under runs/ is either a part, `part-<sequence>-<tag>/`, holding the runs of one
finished group, or a run folder `<run_id>/` of the older layout (one run). Either holds
run.parquet, history.parquet, layers.parquet and, written last, complete.json:

    part:   {"format": 2, "run_ids": [...], "statuses": [...], "files": {name: {"size", "crc32"}},
             "labels": {...}}
    run:    {"format": 1, "run_id": ..., "status": ..., "files": {...}}

A newer part supersedes older folders for the runs they share (a failed or damaged run redone):
folders rank by (sequence, name), run folders below every part.
"""
import json
import os
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TABLES = ("run", "history", "layers")
TMP_PREFIX = ".tmp-"
PART_PREFIX = "part-"
FINISHED = ("completed", "diverged")
RECORD = "complete.json"
RECORD_FORMAT = 1  # a run folder's record
PART_FORMAT = 2  # a part's record
SEQUENCE_DIGITS = 8


def _crc32(data):
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_part(folder):
    return Path(folder).name.startswith(PART_PREFIX)


def rank(folder):
    """(sequence, name): the later folder of two wins a run both hold; run folders rank -1."""
    name = Path(folder).name
    if not name.startswith(PART_PREFIX):
        return (-1, name)
    digits = name[len(PART_PREFIX):len(PART_PREFIX) + SEQUENCE_DIGITS]
    return (int(digits) if digits.isdigit() else -1, name)


def read_record(folder):
    """A folder's completion record (dict), or None when it has none or it is unreadable."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) \
        else None


def record_runs(folder, record):
    """{run_id: status} a completion record lists (a run folder's: its one run), or None."""
    if record is None:
        return None
    if is_part(folder):
        ids, statuses = record.get("run_ids"), record.get("statuses")
        if not isinstance(ids, list) or not isinstance(statuses, list) or \
                len(ids) != len(statuses):
            return None
        return {str(r): str(s) for r, s in zip(ids, statuses)}
    status = record.get("status")
    return {Path(folder).name: str(status) if status is not None else None}


def check_run(folder, checksums=True):
    """None when a folder (part or run) matches its completion record, else what is wrong (one
    phrase). checksums=False compares sizes only."""
    folder = Path(folder)
    if not (folder / RECORD).exists():
        return f"no {RECORD}"
    record = read_record(folder)
    if record is None or record_runs(folder, record) is None:
        return f"{RECORD} is unreadable"
    for name in TABLES:
        entry = record["files"].get(f"{name}.parquet")
        file = folder / f"{name}.parquet"
        if not isinstance(entry, dict):
            return f"{RECORD} does not list {file.name}"
        try:
            size = file.stat().st_size
        except OSError:
            return f"{file.name} is missing"
        if size != entry.get("size"):
            return f"{file.name} has {size} bytes, expected {entry.get('size')}"
        if checksums and _crc32(file.read_bytes()) != entry.get("crc32"):
            return f"{file.name} fails its checksum"
    return None


def read_folder(folder):
    """({table: pyarrow.Table}, record or None) of a part or run folder, verified against its
    record (a run folder without one must read cleanly; a part must have one); raises
    ValueError naming what is wrong."""
    folder = Path(folder)
    has_record = (folder / RECORD).exists()
    if not has_record and is_part(folder):
        raise ValueError(f"no {RECORD}")
    record = read_record(folder) if has_record else None
    if has_record and (record is None or record_runs(folder, record) is None):
        raise ValueError(f"{RECORD} is unreadable")
    tables = {}
    for name in TABLES:
        file = folder / f"{name}.parquet"
        try:
            data = file.read_bytes()
        except OSError:
            raise ValueError(f"{file.name} is missing") from None
        if record is not None:
            entry = record["files"].get(file.name) or {}
            if len(data) != entry.get("size"):
                raise ValueError(f"{file.name} has {len(data)} bytes, expected "
                                 f"{entry.get('size')}")
            if _crc32(data) != entry.get("crc32"):
                raise ValueError(f"{file.name} fails its checksum")
        try:
            tables[name] = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{file.name} does not read: {err}") from None
    return tables, record


def _column(values):
    """An Arrow column of a list or array, NaN stored as null (as pandas writes it)."""
    return values if isinstance(values, (pa.Array, pa.ChunkedArray)) else \
        pa.array(values, from_pandas=True)


def _run_table(rows):
    """One row per run: the union of the rows' keys in order of appearance (run_id first when
    a row lacks it), missing values null."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if "run_id" not in columns:
        columns.insert(0, "run_id")
    return pa.table({k: _column([row.get(k) for row in rows]) for k in columns})


def _rows_table(run_id, columns):
    """A run's history or layers (a dict of column lists or arrays) with its run_id column
    first unless it has one."""
    arrays = {k: _column(v) for k, v in columns.items()}
    count = len(next(iter(arrays.values()))) if arrays else 0
    if "run_id" not in arrays:
        arrays = {"run_id": pa.array([run_id] * count, pa.string()), **arrays}
    return pa.table(arrays)


def part_tables(entries):
    """{table: pyarrow.Table} of runs given as (run_id, run_row, history, layers)."""
    tables = {"run": _run_table([row if "run_id" in row else {"run_id": run_id, **row}
                                 for run_id, row, _, _ in entries])}
    for index, name in ((2, "history"), (3, "layers")):
        tables[name] = pa.concat_tables([_rows_table(e[0], e[index]) for e in entries],
                                        promote_options="permissive")
    return tables


def write_folder(runs_dir, final_name, tables, record):
    """Writes the tables and, last, their completion record into a temporary folder, flushes
    them, and renames it to runs_dir/final_name (which must not exist)."""
    tmp = Path(runs_dir) / f"{TMP_PREFIX}{final_name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    files = {}
    for name in TABLES:
        target = tmp / f"{name}.parquet"
        pq.write_table(tables[name], target)
        with open(target, "rb") as handle:
            data = handle.read()
            os.fsync(handle.fileno())
        files[target.name] = {"size": len(data), "crc32": _crc32(data)}
    record = {**record, "files": files}
    with open(tmp / RECORD, "w") as handle:
        handle.write(json.dumps(record, indent=1, sort_keys=True))
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(tmp)
    os.rename(tmp, Path(runs_dir) / final_name)
    _fsync_dir(runs_dir)
    return record
