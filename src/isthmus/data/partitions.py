"""A party's table in partitions that its compute backend's tasks read themselves: Parquet row groups, CSV chunks.

Why: at 100M rows a party's ids as Python strings take 6-8 GB, and canonicalising them is a serial
loop in the party's process. Read per partition by the cluster's tasks, each id is canonicalised
(and, for PSI, hashed and blinded) where it is read, and only fixed-width results come back. After PSI,
each partition's task reads its rows again and returns only the shared ones (:func:`load_rows`), so the
party's process holds the shared rows, never the whole table.

The driver only describes the partitions, from the file's metadata (Parquet) or from line ends
found by seeking (CSV: chunks of about :data:`CSV_CHUNK_BYTES`, cut after a newline, so a CSV whose
quoted cells hold line breaks cannot be cut; such a cell fails the chunk's read). The file must be
at the same path on every node of the cluster (shared storage), as for the local pool. A partition
that fails to read names the party, the file and the row group or chunk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from isthmus.compute.base import Compute
from isthmus.data.ids import canonical_id
from isthmus.data.table import (
    PARQUET_SUFFIXES,
    PartyTable,
    checked_label,
    checked_matrix,
    id_array,
    open_columns,
    open_reader,
    select_columns,
)
from isthmus.errors import DataError

#: Files that can be read in partitions (a gzip stream cannot be cut).
PARTITIONED_SUFFIXES = (".csv", *PARQUET_SUFFIXES)
#: Bytes of a CSV chunk (cut at the next line end): a few seconds of one task's work.
CSV_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class Partition:
    """One Parquet row group (``start``: its index) or one CSV chunk (bytes ``start`` to ``stop``)."""

    party: str
    path: str
    index: int
    start: int
    stop: int
    csv_columns: tuple[str, ...] | None  # the CSV header's names; None for Parquet

    def describe(self) -> str:
        if self.csv_columns is None:
            return f"row group {self.start}"
        return f"CSV chunk {self.index} (bytes {self.start}-{self.stop})"

    def fail(self, message: str) -> DataError:
        return DataError(f"party {self.party!r}, file {self.path!r}, {self.describe()}: {message}")


@dataclass(frozen=True)
class TablePartitions:
    """The partitions of one party's table file, and the column of its ids."""

    party: str
    path: str
    id_column: str
    parts: list[Partition]
    size_hint: int  # rows (Parquet) or an upper bound of them (CSV bytes / 2): how big a pool to ask for


def table_partitions(path: str | Path, *, party: str, id_column: str,
                     chunk_bytes: int = CSV_CHUNK_BYTES) -> TablePartitions:
    """Describe ``path``'s partitions (reading metadata or seeking, never the rows); DataError naming the file."""
    path = Path(path)
    reader, fail = open_reader(path, party)
    if not path.name.lower().endswith(PARTITIONED_SUFFIXES):
        raise fail("reading in partitions needs a Parquet file or an uncompressed CSV file")
    columns = reader.columns()
    select_columns(columns, id_column, None, [], [], fail)  # the id column must exist
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        parts = [Partition(party, str(path), group, group, group + 1, None) for group in range(metadata.num_row_groups)]
        return TablePartitions(party, str(path), id_column, parts, metadata.num_rows)
    bounds = _line_bounds(path, chunk_bytes)
    parts = [Partition(party, str(path), i, start, stop, tuple(columns)) for i, (start, stop) in enumerate(bounds)]
    return TablePartitions(party, str(path), id_column, parts, path.stat().st_size // 2)


def _line_bounds(path: Path, chunk_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges after the header line, each ending after a newline (or at the end of the file)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        file.readline()
        bounds, start = [], file.tell()
        while start < size:
            file.seek(min(start + chunk_bytes, size) - 1)
            file.readline()  # to the end of the line holding the chunk's last byte
            stop = file.tell()
            bounds.append((start, stop))
            start = stop
    return bounds


def read_ids(id_column: str, partition: Partition) -> list[str]:
    """Task entry point: the partition's ids in canonical form (:mod:`isthmus.data.ids`), in file order."""
    raw = _read_frame(partition, [id_column], id_column)[id_column].tolist()
    try:
        return [canonical_id(value, party=partition.party, row=row) for row, value in enumerate(raw)]
    except DataError as exc:
        detail = str(exc).removeprefix(f"party {partition.party!r}: ")
        raise partition.fail(f"{detail} (rows counted from the start of this partition)") from None


def _read_frame(partition: Partition, columns: list[str], id_column: str) -> pd.DataFrame:
    """The partition's ``columns``, read as :func:`isthmus.data.table.read_table` reads the whole file
    (CSV ids as text, Parquet's stored types)."""
    try:
        if partition.csv_columns is None:
            import pyarrow.parquet as pq

            return pq.ParquetFile(partition.path).read_row_group(partition.start, columns=columns).to_pandas()
        with open(partition.path, "rb") as file:
            file.seek(partition.start)
            data = file.read(partition.stop - partition.start)
        return pd.read_csv(io.BytesIO(data), header=None, names=list(partition.csv_columns), usecols=columns,
                           dtype={id_column: str})
    except Exception as exc:  # pyarrow, pandas and the OS raise many kinds: name the partition whatever it was
        raise partition.fail(f"cannot be read: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class RowSelection:
    """What a job takes of each row (its data spec, checked against the file's header once, at the driver)."""

    id_column: str
    columns: list[str]  # every column to read, in file order
    features: list[str]
    label: str | None
    allow_missing: bool  # empty feature cells kept as NaN (``read_table``'s ``missing="keep"``)


def row_selection(table: TablePartitions, *, label_column: str | None, feature_columns: list[str] | None,
                  exclude: list[str] | tuple[str, ...], missing: str) -> RowSelection:
    """The columns to read, with :func:`isthmus.data.table.read_table`'s checks and errors (header only)."""
    _, chosen, _ = open_columns(table.path, party=table.party, id_column=table.id_column, label_column=label_column,
                                feature_columns=feature_columns, exclude=exclude)
    return RowSelection(table.id_column, chosen.columns, chosen.features, label_column, missing == "keep")


#: What a partition's task returns: its kept rows' ids, features and label (None without a label column).
Rows = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def read_rows(selection: RowSelection, expected_rows: int, keep: np.ndarray, partition: Partition) -> Rows:
    """Task entry point: the rows ``keep`` (ascending, counted from the partition's start) of one partition.

    The whole partition is checked as :func:`isthmus.data.table.read_table` checks a whole file (numeric,
    finite, no missing cell unless allowed), so a table fails on the same cells whichever backend reads it; only
    the kept rows go back to the driver. ``expected_rows`` is the count seen when the ids were read: a file
    changed since then would misalign rows, so it fails instead."""
    frame = _read_frame(partition, selection.columns, selection.id_column)
    if len(frame) != expected_rows:
        raise partition.fail(f"holds {len(frame)} rows now but held {expected_rows} when its ids were read "
                             "for the intersection (did the file change during the job?)")

    def fail(message: str) -> DataError:
        where = " (data rows counted from the start of this partition)" if "data row" in message else ""
        return partition.fail(message + where)

    kept = frame.iloc[keep]
    features = checked_matrix(frame, selection.features, "features", allow_nan=selection.allow_missing, fail=fail)
    label = None
    if selection.label is not None:
        label = checked_label(frame, selection.label, fail)[keep]
    return id_array(kept[selection.id_column], selection.id_column, fail), features[keep], label


def load_rows(compute: Compute, table: TablePartitions, selection: RowSelection, rows_per_partition: list[int],
              positions: np.ndarray) -> PartyTable:
    """The table's rows at ``positions`` (rows of the whole file, in file order), in that order: each partition's
    task reads its partition and returns only its rows among them, so the driver holds those rows, never the
    table. ``rows_per_partition``: the partitions' row counts when their ids were read (from PSI)."""
    positions = np.asarray(positions, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(rows_per_partition, dtype=np.int64)])
    if len(rows_per_partition) != len(table.parts):
        raise ValueError(f"{len(rows_per_partition)} row counts for {len(table.parts)} partitions")
    if positions.size and (positions.min() < 0 or positions.max() >= offsets[-1]):
        raise DataError(f"party {table.party!r}: row positions must lie in [0, {offsets[-1]})")
    ordered = np.sort(positions)
    cuts = np.searchsorted(ordered, offsets)
    with compute.pool(int(offsets[-1])) as pool:
        futures = [pool.submit(read_rows, selection, int(rows_per_partition[i]),
                               ordered[cuts[i]:cuts[i + 1]] - offsets[i], part) for i, part in enumerate(table.parts)]
        pieces = [future.result() for future in futures]
    label = None if selection.label is None else np.concatenate([piece[2] for piece in pieces])
    in_file_order = PartyTable(party=table.party, ids=np.concatenate([piece[0] for piece in pieces]),
                               features=np.concatenate([piece[1] for piece in pieces]),
                               feature_names=list(selection.features), label=label)
    return in_file_order.take(np.searchsorted(ordered, positions))
