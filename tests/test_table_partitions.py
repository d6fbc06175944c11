"""A party's table described in partitions (Parquet row groups, CSV chunks at line ends) and read back per
partition: the same ids, in the same order, as reading the whole file; no Ray needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isthmus.compute import LocalCompute
from isthmus.data.ids import canonical_ids
from isthmus.data.partitions import read_ids, table_partitions
from isthmus.data.table import read_table
from isthmus.errors import DataError
from isthmus.protocols.psi import intersect
from isthmus.transport.local import LocalHub
from test_psi import run_roles, shared_ids


def _whole_file_ids(path) -> list[str]:
    return canonical_ids(read_table(path, party="host", id_column="id").ids, party="host").values


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_csv_chunks_cover_every_line_once_in_order(tmp_path, trailing_newline):
    path = tmp_path / "host.csv"
    text = "id,x\n" + "".join(f"{i:07d},{i}\n" for i in range(3_000)) + "\n 42x ,1"  # a blank line, an id to strip
    path.write_text(text + ("\n" if trailing_newline else ""))
    table = table_partitions(path, party="host", id_column="id", chunk_bytes=1_000)
    assert len(table.parts) > 10
    assert table.parts[0].start == len("id,x\n") and table.parts[-1].stop == path.stat().st_size
    assert all(a.stop == b.start for a, b in zip(table.parts, table.parts[1:]))
    ids = [value for part in table.parts for value in read_ids(part, "id")]
    assert ids == _whole_file_ids(path) and ids[7] == "0000007" and ids[-1] == "42x"


def test_parquet_row_groups_give_the_whole_files_ids(tmp_path):
    path = tmp_path / "host.parquet"
    pd.DataFrame({"id": np.arange(1_000, 3_500), "x": 1.0}).to_parquet(path, row_group_size=600)
    table = table_partitions(path, party="host", id_column="id")
    assert [part.describe() for part in table.parts] == [f"row group {i}" for i in range(5)]
    assert table.size_hint == 2_500
    assert [value for part in table.parts for value in read_ids(part, "id")] == _whole_file_ids(path)


def test_files_that_cannot_be_read_in_partitions_are_named(tmp_path):
    (tmp_path / "host.csv.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"party 'host', file '.*host.csv.gz': reading in partitions needs"):
        table_partitions(tmp_path / "host.csv.gz", party="host", id_column="id")
    (tmp_path / "host.csv").write_text("key,x\n1,2\n")
    with pytest.raises(DataError, match=r"file '.*host.csv': id column 'id' not found"):
        table_partitions(tmp_path / "host.csv", party="host", id_column="id")


@pytest.mark.parametrize("dedupe", ["error", "first"])
def test_a_partitioned_host_on_the_local_pool_finds_the_in_memory_intersection(tmp_path, dedupe):
    guest = [f"c{i}" for i in range(300)] + [f"g{i}" for i in range(200)]
    host = [f"h{i}" for i in range(1_000)] + [f"c{i}" for i in range(300)]
    host.insert(1_100, "c5")  # a duplicate in another chunk: an error, or the first row kept
    path = tmp_path / "host.csv"
    path.write_text("id\n" + "".join(f"{value}\n" for value in host))
    table = table_partitions(path, party="host", id_column="id", chunk_bytes=2_000)
    hub = LocalHub(["guest", "host"])
    results, errors = run_roles({
        "guest": lambda: intersect(hub.channel("guest", "j"), "guest", guest, dedupe=dedupe),
        "host": lambda: intersect(hub.channel("host", "j"), "host", table, dedupe=dedupe, compute=LocalCompute(2))})
    if dedupe == "error":
        assert "rows 1005 and 1100 hold the same id" in str(errors["host"]), errors
        assert isinstance(errors["guest"], DataError)
        return
    assert not errors, errors
    rows = shared_ids(results, {"guest": guest, "host": host})
    assert rows["guest"] == rows["host"] and set(rows["host"]) == {f"c{i}" for i in range(300)}
    assert 1_100 not in results["host"].positions  # the duplicate's later row is dropped, as in memory
