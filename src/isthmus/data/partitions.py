"""A party's table in partitions that its compute backend's tasks read themselves: Parquet row groups, CSV chunks.

Why: at 100M rows a party's ids as Python strings take 6-8 GB, and canonicalising them is a serial
loop in the party's process. Read per partition by the cluster's tasks, each id is canonicalised
(and, for PSI, hashed and blinded) where it is read, and only fixed-width results come back.

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

import pandas as pd

from isthmus.data.ids import canonical_id
from isthmus.data.table import PARQUET_SUFFIXES, open_reader, select_columns
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


def read_ids(partition: Partition, id_column: str) -> list[str]:
    """Task entry point: the partition's ids in canonical form (:mod:`isthmus.data.ids`), in file order."""
    raw = _raw_ids(partition, id_column)
    try:
        return [canonical_id(value, party=partition.party, row=row) for row, value in enumerate(raw)]
    except DataError as exc:
        detail = str(exc).removeprefix(f"party {partition.party!r}: ")
        raise partition.fail(f"{detail} (rows counted from the start of this partition)") from None


def _raw_ids(partition: Partition, id_column: str) -> list:
    try:
        if partition.csv_columns is None:
            import pyarrow.parquet as pq

            return pq.ParquetFile(partition.path).read_row_group(partition.start, columns=[id_column]).column(0).to_pylist()
        with open(partition.path, "rb") as file:
            file.seek(partition.start)
            data = file.read(partition.stop - partition.start)
        frame = pd.read_csv(io.BytesIO(data), header=None, names=list(partition.csv_columns), usecols=[id_column],
                            dtype={id_column: str})
        return frame[id_column].tolist()
    except Exception as exc:  # pyarrow, pandas and the OS raise many kinds: name the partition whatever it was
        raise partition.fail(f"cannot be read: {type(exc).__name__}: {exc}") from None
