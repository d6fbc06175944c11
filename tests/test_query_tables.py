"""Loans tables and the consortium configuration: what is read, and the errors for what is wrong."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from isthmus.errors import ConfigError, DataError
from isthmus.query.config import Policy, QueryConfig, TableFormat, config_document, load_config
from isthmus.query.loans import changes, load_exposures

POLICY = Policy()
TABLE = TableFormat()


def write(tmp_path, rows, name="loans.csv"):
    path = tmp_path / name
    frame = pd.DataFrame(rows, columns=["customer_id", "amount", "status", "date"])
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


def test_active_exposure_per_customer_in_minor_units(tmp_path):
    path = write(tmp_path, [
        ["C1", 100.10, "active", "2024-01-01"],
        ["C1", 0.91, " Active ", "2024-02-01"],  # several loans add up; status is trimmed, any case
        ["C1", 50, "closed", "2024-03-01"],  # a closed loan does not count
        ["C2", 70, "closed", "2024-01-01"],  # a customer without active loans is left out entirely
        [" 0042 ", 1, "active", "2024-01-01"],  # ids are text: leading zeros kept, white space trimmed
    ])
    assert load_exposures(path, TABLE, POLICY, party="bank1") == {"C1": 10101, "0042": 100}


def test_parquet_and_configured_columns(tmp_path):
    path = write(tmp_path, [["C1", 5, "open", "2024-01-01"]], "loans.parquet")
    table = TableFormat(active_statuses=("open",))
    assert load_exposures(path, table, Policy(amount_decimals=0), party="bank1") == {"C1": 5}


def test_missing_column_names_party_and_file(tmp_path):
    path = tmp_path / "loans.csv"
    pd.DataFrame({"customer_id": ["C1"], "amount": [1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"loans table .*loans.csv of 'bank1' lacks column\(s\) \['status'\]"):
        load_exposures(path, TABLE, POLICY, party="bank1")


@pytest.mark.parametrize("amount", [-1, "n/a"])
def test_bad_amounts_name_the_row(tmp_path, amount):
    path = write(tmp_path, [["C1", 1, "active", ""], ["C2", amount, "active", ""]])
    with pytest.raises(DataError, match="bad rows 2"):
        load_exposures(path, TABLE, POLICY, party="bank1")


def test_malformed_ids_are_refused_by_position_not_by_value(tmp_path):
    path = write(tmp_path, [["C1", 1, "active", ""], ["BAD ID", 1, "active", ""]])
    with pytest.raises(DataError, match="active loan 2: contains white space") as caught:
        load_exposures(path, TABLE, POLICY, party="bank1")
    assert "BAD ID" not in str(caught.value)


def test_unknown_file_type(tmp_path):
    with pytest.raises(DataError, match="expected a .csv"):
        load_exposures(tmp_path / "loans.xlsx", TABLE, POLICY, party="bank1")


def test_changes_between_versions():
    change = changes({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4})
    assert change.upserted == {"b": 5, "d": 4} and change.removed == ["c"] and change.size == 3


def test_config_round_trip_and_member_checks(tmp_path):
    config = QueryConfig("lenders", "agg", {"agg": "127.0.0.1:1", "bank1": "127.0.0.1:2", "bank2": "127.0.0.1:3"},
                         Policy(mode="per_institution", max_batch=7), cert_dir=tmp_path / "certs")
    path = tmp_path / "query.yaml"
    path.write_text(yaml.safe_dump(config_document(config)))
    loaded = load_config(path)
    assert loaded == config and loaded.institutions == ["bank1", "bank2"]
    with pytest.raises(ConfigError, match="unknown party 'bank9'"):
        loaded.check_institution("bank9")


def test_policy_digest_differs_per_mode():
    assert Policy().digest() != Policy(mode="per_institution").digest()


@pytest.mark.parametrize("change, message", [
    ({"policy": {"mode": "per-institution"}}, "policy.mode must be one of"),
    ({"policy": {"max_btach": 5}}, r"unknown key\(s\) \['max_btach'\]"),
    ({"policy": {"max_batch": 0}}, "policy.max_batch must be an integer"),
    ({"institutions": {}}, "at least one member"),
    ({"surprise": 1}, "unknown key"),
    ({"institutions": {"bank1": "h-2"}}, "the address of 'bank1' must be host:port with a port from 1 to 65535"),
    ({"aggregator": {"name": "agg", "address": "h:99999"}}, "the address of 'agg' must be host:port"),
])
def test_config_mistakes_are_named(tmp_path, change, message):
    doc = {"consortium": "c", "aggregator": {"name": "agg", "address": "h:1"}, "institutions": {"bank1": "h:2"}}
    doc.update(change)
    path = tmp_path / "query.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message):
        load_config(path)
