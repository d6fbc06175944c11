"""A party's table described in partitions (Parquet row groups, CSV chunks at line ends) and read back per
partition: the same ids, in the same order, as reading the whole file; PSI over partitioned ids (both roles,
every method) and the shared rows loaded per partition equal the whole file's rows; no Ray needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isthmus.compute import LocalCompute
from isthmus.data.ids import canonical_ids
from isthmus.data.partitions import load_rows, read_ids, row_selection, table_partitions
from isthmus.data.table import read_table
from isthmus.errors import DataError
from isthmus.protocols.psi import METHODS, intersect
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
    ids = [value for part in table.parts for value in read_ids("id", part)]
    assert ids == _whole_file_ids(path) and ids[7] == "0000007" and ids[-1] == "42x"


def test_parquet_row_groups_give_the_whole_files_ids(tmp_path):
    path = tmp_path / "host.parquet"
    pd.DataFrame({"id": np.arange(1_000, 3_500), "x": 1.0}).to_parquet(path, row_group_size=600)
    table = table_partitions(path, party="host", id_column="id")
    assert [part.describe() for part in table.parts] == [f"row group {i}" for i in range(5)]
    assert table.size_hint == 2_500
    assert [value for part in table.parts for value in read_ids("id", part)] == _whole_file_ids(path)


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


def party_files(folder, *, guest_rows: int = 400, host_rows: int = 1_200, shared: int = 250) -> dict:
    """A guest CSV (text ids, a label, a missing-free feature set) and a host Parquet file of several row groups
    (integer ids): canonical ids meet across the two types. Rows are in random order in both files."""
    rng = np.random.default_rng(7)
    guest_ids = rng.permutation(np.concatenate([np.arange(shared), np.arange(10_000, 10_000 + guest_rows - shared)]))
    host_ids = rng.permutation(np.concatenate([np.arange(shared), np.arange(20_000, 20_000 + host_rows - shared)]))
    guest = pd.DataFrame({"id": [f"{i}" for i in guest_ids], "y": rng.integers(0, 2, guest_rows),
                          "a": rng.normal(size=guest_rows), "b": rng.integers(0, 5, guest_rows)})
    host = pd.DataFrame({"id": host_ids, **{f"x{j}": rng.normal(size=host_rows) for j in range(3)}, "note": "n"})
    guest.to_csv(folder / "guest.csv", index=False)
    host.to_parquet(folder / "host.parquet", row_group_size=300)
    return {"guest": dict(path=folder / "guest.csv", label="y", exclude=[]),
            "host": dict(path=folder / "host.parquet", label=None, exclude=["note"]), "shared": shared}


def partitioned_alignment(files: dict, method: str, compute) -> dict:
    """Both parties intersect with their ids read per partition on ``compute``, then load their shared rows per
    partition; returns each party's (PSI result, aligned table)."""
    tables = {party: table_partitions(files[party]["path"], party=party, id_column="id", chunk_bytes=4_000)
              for party in ("guest", "host")}
    hub = LocalHub(list(tables))
    results, errors = run_roles({party: (lambda party=party: intersect(hub.channel(party, "j"), party, tables[party],
                                                                       method=method, compute=compute))
                                 for party in tables}, timeout=120)
    assert not errors, errors
    aligned = {}
    for party, table in tables.items():
        selection = row_selection(table, label_column=files[party]["label"], feature_columns=None,
                                  exclude=files[party]["exclude"], missing="error")
        aligned[party] = results[party], load_rows(compute, table, selection, results[party].partition_rows,
                                                   results[party].positions)
    return aligned


def assert_same_as_the_whole_file(files: dict, aligned: dict) -> None:
    """Each party's table equals the whole file read in memory, taken at the same positions; the two parties'
    rows hold the same ids in the same order, and exactly the shared ones."""
    for party, (result, table) in aligned.items():
        whole = read_table(files[party]["path"], party=party, id_column="id", label_column=files[party]["label"],
                           exclude=files[party]["exclude"]).take(result.positions)
        assert table.feature_names == whole.feature_names and table.ids.dtype == whole.ids.dtype
        assert np.array_equal(table.ids, whole.ids) and np.array_equal(table.features, whole.features)
        assert (table.label is None) == (whole.label is None)
        assert table.label is None or np.array_equal(table.label, whole.label)
        assert sum(result.partition_rows) == len(pd.read_parquet(files[party]["path"]) if party == "host"
                                                 else pd.read_csv(files[party]["path"]))
    guest_ids, host_ids = ([str(i) for i in aligned[party][1].ids] for party in ("guest", "host"))
    assert guest_ids == host_ids and set(guest_ids) == {str(i) for i in range(files["shared"])}


@pytest.mark.parametrize("method", METHODS)
def test_both_parties_partitioned_on_the_local_pool_align_the_whole_files_rows(tmp_path, method):
    files = party_files(tmp_path)
    assert_same_as_the_whole_file(files, partitioned_alignment(files, method, LocalCompute(2)))


def test_yes_no_labels_read_per_partition_as_the_whole_file(tmp_path):
    """Each cell is read alone, so a chunk holding only "yes" reads as the whole file does."""
    files = party_files(tmp_path)
    guest = pd.read_csv(files["guest"]["path"])
    guest.assign(y=guest["y"].map({0: "No", 1: "yes"})).to_csv(files["guest"]["path"], index=False)
    aligned = partitioned_alignment(files, METHODS[0], LocalCompute(2))
    assert_same_as_the_whole_file(files, aligned)
    assert set(aligned["guest"][1].label) == {0.0, 1.0}


def test_a_bad_cell_in_an_unshared_row_fails_naming_the_chunk(tmp_path):
    """Every row of a partition is checked, as the whole file is by read_table, not only the shared ones."""
    path = tmp_path / "guest.csv"
    path.write_text("id,a\n" + "".join(f"{i},{i}\n" for i in range(2_000)) + "9999,oops\n")
    table = table_partitions(path, party="guest", id_column="id", chunk_bytes=4_000)
    selection = row_selection(table, label_column=None, feature_columns=None, exclude=[], missing="error")
    counts = [len(read_ids("id", part)) for part in table.parts]
    last = len(table.parts) - 1
    with pytest.raises(DataError, match=rf"party 'guest', file '.*guest.csv', CSV chunk {last} \(bytes \d+-\d+\): "
                                        r"column 'a' is not numeric: 1 cell\(s\) such as 'oops' \(data row \d+\) "
                                        r"\(data rows counted from the start of this partition\)"):
        load_rows(LocalCompute(1), table, selection, counts, np.array([3, 1]))


def test_a_file_changed_since_its_ids_were_read_fails_rather_than_misalign(tmp_path):
    path = tmp_path / "host.parquet"
    pd.DataFrame({"id": np.arange(100), "x": 1.0}).to_parquet(path, row_group_size=50)
    table = table_partitions(path, party="host", id_column="id")
    selection = row_selection(table, label_column=None, feature_columns=None, exclude=[], missing="error")
    with pytest.raises(DataError, match=r"row group 1: holds 50 rows now but held 49"):
        load_rows(LocalCompute(1), table, selection, [50, 49], np.array([0, 60]))


@pytest.mark.parametrize("partitioned", ["guest", "host"])
def test_a_partitioned_side_stops_a_pair_with_far_more_ids_at_the_handshake(tmp_path, partitioned):
    many, few = [f"c{i}" for i in range(500)], ["c1", "c2", "c3"]
    path = tmp_path / "ids.csv"
    path.write_text("id\n" + "".join(f"{value}\n" for value in (many if partitioned == "guest" else few)))
    table = table_partitions(path, party=partitioned, id_column="id", chunk_bytes=500)
    ids = {"guest": table if partitioned == "guest" else many, "host": table if partitioned == "host" else few}
    hub = LocalHub(["guest", "host"])
    results, errors = run_roles({party: (lambda party=party: intersect(
        hub.channel(party, "j"), party, ids[party], max_peer_ratio=100, compute=LocalCompute(2)))
        for party in ("guest", "host")})
    assert not results and set(errors) == {"guest", "host"}
    assert all("'guest' brings 500 ids against 3 at 'host'" in str(error) for error in errors.values()), errors
