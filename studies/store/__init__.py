"""The results store: results/<study>/ with one folder of Parquet tables per finished group of
runs (a part), and a manifest.

    results/<study>/manifest.json        the latest sweep: spec, grid, provenance, counts
    results/<study>/.lock                the sweep writing the store: {"pid", "host", "since"}
    results/<study>/runs/part-<sequence>-<tag>/{run,history,layers}.parquet
    results/<study>/runs/part-<sequence>-<tag>/complete.json   {"format": 2, "run_ids": [...],
                     "statuses": [...], "files": {"run.parquet": {"size", "crc32"}, ...}}

A part's tables are written into a temporary folder and flushed, then its completion record
(written last) lists every run and every file's size and CRC-32; the folder is then renamed into
place. A part counts as stored only when its record is there and every file matches it, so a
truncated, emptied or deleted table makes all its runs unfinished (redone by the next sweep),
and `load` skips it with one warning. A run redone later lives in a newer part, which wins; a
sweep removes the folders whose runs all live on in newer ones. Stores of the older layout, one
folder runs/<run_id>/ per run, load and resume as they did (studies.store.files).

One sweep writes a store at a time (studies.store.lock).
"""
from studies.store.files import (FINISHED, PART_PREFIX, RECORD, TABLES, TMP_PREFIX, check_run,
                                 read_folder, read_record)
from studies.store.lock import LOCK, StoreError, StoreLocked
from studies.store.machine import provenance
from studies.store.reader import (FIRST_LABELS, DamagedRunWarning, Results, load,
                                  load_labelled, relabel_run)
from studies.store.store import Store

__all__ = ["FINISHED", "FIRST_LABELS", "LOCK", "PART_PREFIX", "RECORD", "TABLES", "TMP_PREFIX",
           "DamagedRunWarning", "Results", "Store", "StoreError", "StoreLocked", "check_run",
           "load", "load_labelled", "provenance", "read_folder", "read_record", "relabel_run"]
