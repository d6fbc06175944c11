"""Reading party tables: the FATE files as they are, and every error an operator may meet."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError, DataError


def write_csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read(path: Path, **kw) -> PartyTable:
    kw.setdefault("party", "guest")
    kw.setdefault("id_column", "id")
    return read_table(path, **kw)


# --- the shared data ---------------------------------------------------------------------------


def test_reads_fate_guest_with_label_and_all_other_columns_as_features(fate_data):
    table = read(fate_data / "breast_hetero_guest.csv", label_column="y")
    assert table.party == "guest"
    assert table.features.shape == (569, 10)
    assert table.features.dtype == np.float64 and table.features.flags.c_contiguous
    assert table.feature_names == [f"x{i}" for i in range(10)]
    assert (int((table.label == 0).sum()), int((table.label == 1).sum())) == (212, 357)
    raw = pd.read_csv(fate_data / "breast_hetero_guest.csv")
    np.testing.assert_array_equal(table.features, raw[table.feature_names].to_numpy())
    assert table.ids.dtype == object and list(table.ids[:3]) == [str(i) for i in raw["id"][:3]]


def test_reads_fate_host_without_label_and_with_feature_selection(fate_data):
    host = read(fate_data / "breast_hetero_host.csv", party="host")
    assert host.label is None and host.features.shape == (569, 20)
    picked = read(fate_data / "breast_hetero_host.csv", party="host", feature_columns=["x3", "x0"])
    assert picked.feature_names == ["x3", "x0"]
    np.testing.assert_array_equal(picked.features, host.features[:, [3, 0]])
    fewer = read(fate_data / "breast_hetero_host.csv", party="host", exclude=["x0", "x1"])
    assert fewer.feature_names == [f"x{i}" for i in range(2, 20)]


def test_label_in_the_middle_of_the_columns(fate_data):
    table = read(fate_data / "student_homo_guest.csv", label_column="y")
    assert "y" not in table.feature_names and len(table.feature_names) == 13
    assert table.label.min() >= 0 and table.label.max() <= 20


# --- ids and take ------------------------------------------------------------------------------


def test_csv_ids_are_kept_as_text_so_leading_zeros_survive(tmp_path):
    table = read(write_csv(tmp_path, "id,x\n007,1\n7,2\n"))
    assert list(table.ids) == ["007", "7"]


def test_take_returns_rows_in_the_given_order(tmp_path):
    table = read(write_csv(tmp_path, "id,y,a,b\nr0,0,1,10\nr1,1,2,20\nr2,0,3,30\n"), label_column="y")
    taken = table.take(np.array([2, 0]))
    assert list(taken.ids) == ["r2", "r0"]
    np.testing.assert_array_equal(taken.features, [[3, 30], [1, 10]])
    np.testing.assert_array_equal(taken.label, [0, 0])
    assert taken.features.flags.c_contiguous and taken.feature_names == ["a", "b"]
    assert table.take(np.array([], dtype=np.int64)).n_rows == 0


@pytest.mark.parametrize("positions", [[3], [-1], [0.0], [[0]]])
def test_take_refuses_positions_out_of_range_negative_or_not_integer(tmp_path, positions):
    table = read(write_csv(tmp_path, "id,a\n1,1\n2,2\n3,3\n"), party="host")
    with pytest.raises(DataError, match="party 'host'"):
        table.take(np.array(positions))


def test_party_table_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        PartyTable("p", np.arange(3), np.zeros((2, 1)), ["a"], None)
    with pytest.raises(ValueError, match="label"):
        PartyTable("p", np.arange(2), np.zeros((2, 1)), ["a"], np.zeros(3))


# --- Parquet -----------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_integer_ids(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": [5, 6], "y": [1, 0], "a": [0.5, 1.5], "flag": [True, False]}).to_parquet(path)
    table = read(path, label_column="y")
    assert table.ids.dtype == np.int64 and list(table.ids) == [5, 6]
    np.testing.assert_array_equal(table.features, [[0.5, 1.0], [1.5, 0.0]])


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_pyarrow(name, *args):
        return None if name == "pyarrow" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_pyarrow)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"party 'guest'.*t\.parquet.*needs pyarrow.*isthmus\[parquet\]"):
        read(path)


# --- every DataError names the party, the file and the problem ---------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"party 'bank', file '.*nope\.csv': no such file"):
        read(tmp_path / "nope.csv", party="bank")


def test_unknown_format(tmp_path):
    with pytest.raises(DataError, match=r"unknown table format.*\.csv"):
        read(write_csv(tmp_path, "id,a\n1,2\n", name="t.xlsx"))


def test_missing_id_column_lists_the_columns_the_file_has(tmp_path):
    path = write_csv(tmp_path, "key,y,a\n1,0,2\n")
    with pytest.raises(DataError, match=r"party 'guest', file .*t\.csv.*id column 'id' not found; "
                                         r"the file has columns 'key', 'y', 'a'"):
        read(path)


def test_missing_label_column_lists_the_columns_the_file_has(tmp_path):
    path = write_csv(tmp_path, "id,a,b\n1,2,3\n")
    with pytest.raises(DataError, match=r"label column 'label' not found; the file has columns 'id', 'a', 'b'"):
        read(path, label_column="label")


def test_a_misspelt_column_is_named_with_the_one_it_likely_meant(tmp_path):
    """'Y' for 'y' listed every column and left the user to spot the case."""
    path = write_csv(tmp_path, "id,y,income,age\n1,0,5,30\n")
    with pytest.raises(DataError, match=r"label column 'Y' not found \(did you mean 'y'\?\); the file has columns"):
        read(path, label_column="Y")
    with pytest.raises(DataError, match=r"\(did you mean 'income' for 'incme', 'age' for 'Age'\?\)"):
        read(path, feature_columns=["incme", "Age"])
    with pytest.raises(DataError, match=r"label column 'target' not found; the file"):
        read(path, label_column="target")


def test_a_file_separated_by_semicolons_is_named_as_such(tmp_path):
    """Spreadsheets in many locales export ';'-separated CSV: one column, which the error now points at."""
    path = write_csv(tmp_path, "id;y;a\n1;0;2\n")
    with pytest.raises(DataError, match=r"the file has columns 'id;y;a' \(one column: is the file separated by ';'"):
        read(path)


def test_missing_feature_or_excluded_column(tmp_path):
    path = write_csv(tmp_path, "id,a\n1,2\n")
    with pytest.raises(DataError, match=r"feature column\(s\) 'b', 'c' not found"):
        read(path, feature_columns=["a", "b", "c"])
    with pytest.raises(DataError, match=r"excluded column\(s\) 'z' not found"):
        read(path, exclude=["z"])


def test_non_numeric_feature_names_the_column_and_shows_a_bad_value(tmp_path):
    path = write_csv(tmp_path, "id,a,b\n1,2,3\n2,4,abc\n3,5,x\n")
    expected = r"party 'guest'.*column 'b' is not numeric: 2 cell\(s\) such as 'abc' \(data row 2\)"
    with pytest.raises(DataError, match=expected):
        read(path)


def test_non_numeric_label_says_what_a_label_may_be(tmp_path):
    path = write_csv(tmp_path, "id,y,a\n1,good,3\n2,0,4\n")
    with pytest.raises(DataError, match=r"column 'y' is not numeric: 1 cell\(s\) such as 'good' \(data row 1\); a "
                                        r"label is a number, or yes/no in words \(Y/N, yes/no, true/false, T/F\)$"):
        read(path, label_column="y")


def test_yes_no_labels_are_read_as_1_and_0(tmp_path):
    """A bank's default flag is often Y/N: it was refused as "not numeric". Any case, spaces around ignored."""
    path = write_csv(tmp_path, "id,y,a\n1,Y,3\n2,n,4\n3, yes ,5\n4,NO,6\n5,true,7\n6,F,8\n")
    assert read(path, label_column="y").label.tolist() == [1, 0, 1, 0, 1, 0]


def test_missing_feature_cells_name_column_and_count(tmp_path):
    path = write_csv(tmp_path, "id,a,b,c\n1,,2,3\n2,1,NaN,3\n3,,2,3\n")
    with pytest.raises(DataError, match=r"missing \(empty or NaN\) values in features: 'a' \(2 cell\(s\)\), "
                                         r"'b' \(1 cell\(s\)\); fill them, or train a model that routes missing "
                                         r"values itself \(SecureBoost; in Python, read with missing='keep'\)"):
        read(path)


def test_missing_keep_keeps_nan_features(tmp_path):
    table = read(write_csv(tmp_path, "id,a,b\n1,,2\n2,1,3\n"), missing="keep")
    assert np.isnan(table.features[0, 0]) and table.features[1, 0] == 1


def test_missing_label_is_an_error_even_when_keeping_missing_features(tmp_path):
    path = write_csv(tmp_path, "id,y,a\n1,,2\n2,1,\n")
    with pytest.raises(DataError, match=r"missing \(empty or NaN\) values in label: 'y' \(1 cell\(s\)\)"):
        read(path, label_column="y", missing="keep")


def test_infinite_values_are_an_error(tmp_path):
    with pytest.raises(DataError, match=r"infinite values in features: 'a' \(1 cell\(s\)\)"):
        read(write_csv(tmp_path, "id,a\n1,inf\n2,1\n"), missing="keep")


def test_empty_id_cell(tmp_path):
    with pytest.raises(DataError, match=r"id column 'id' has 1 empty cell"):
        read(write_csv(tmp_path, "id,a\n,1\n2,1\n"))


def test_table_without_rows(tmp_path):
    with pytest.raises(DataError, match=r"party 'guest'.*the table has no rows"):
        read(write_csv(tmp_path, "id,y,a\n"), label_column="y")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"the file is empty"):
        read(write_csv(tmp_path, ""))


def test_duplicate_column_names(tmp_path):
    with pytest.raises(DataError, match=r"duplicate column name\(s\) 'a'"):
        read(write_csv(tmp_path, "id,a,b,a\n1,2,3,4\n"))


def test_argument_mistakes_are_config_errors(tmp_path):
    path = write_csv(tmp_path, "id,y,a\n1,0,2\n")
    with pytest.raises(ConfigError, match="missing='drop'"):
        read(path, missing="drop")
    with pytest.raises(ConfigError, match="'y' also named as the id or label column"):
        read(path, label_column="y", feature_columns=["a", "y"])


def test_npz_arrays_become_columns_and_images_are_flattened(tmp_path):
    path = tmp_path / "images.npz"
    images = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 1, 2, 2)
    np.savez(path, id=np.array(["a", "b", "007"]), y=np.array([0, 1, 1]), image=images)
    table = read_table(path, party="c", id_column="id", label_column="y")
    assert table.feature_names == ["image_0", "image_1", "image_2", "image_3"]
    assert table.ids.tolist() == ["a", "b", "007"] and table.label.tolist() == [0.0, 1.0, 1.0]
    np.testing.assert_array_equal(table.features, images.reshape(3, 4))


def test_npz_with_object_arrays_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, id=np.array(["a"]), y=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot be read as .npz"):
        read_table(path, party="c", id_column="id", label_column="y")
