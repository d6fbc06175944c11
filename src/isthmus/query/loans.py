"""A lender's loans table (CSV or Parquet) reduced to what a query can reveal: active exposure per customer.

A row is one loan: customer id, amount, status (other columns, such as a date, are ignored). A
customer counts for an institution when at least one of their loans there has an active status;
their exposure is the sum of the amounts of those active loans, in minor units
(``amount * 10**policy.amount_decimals``, rounded). Customers without an active loan are left out
entirely, so nothing about them ever leaves the institution, not even a pseudonym.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from isthmus.errors import DataError
from isthmus.query.config import Policy, TableFormat
from isthmus.query.ids import validated_ids

#: Largest exposure per customer and institution, in minor units: sums stay exact in float64, and
#: the sealed value (:mod:`isthmus.query.records`) has room for the sum over any consortium.
MAX_EXPOSURE = 2**53
_LISTED = 5


def load_exposures(path: str | Path, table: TableFormat, policy: Policy, *, party: str) -> dict[str, int]:
    """Customer id -> active exposure in minor units, from one institution's loans table."""
    path = Path(path)
    frame = _read(path, table, party)
    where = f"loans table {path} of {party!r}"
    amounts = pd.to_numeric(frame[table.amount_column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(amounts) | (amounts < 0))
    if bad.size:
        raise DataError(f"{where}: column {table.amount_column!r} needs non-negative numbers; bad rows {_rows(bad)}")
    active_names = {s.strip().lower() for s in table.active_statuses}
    status = frame[table.status_column].fillna("").astype(str).str.strip().str.lower()
    active = status.isin(active_names).to_numpy()
    minor = np.rint(amounts[active] * 10**policy.amount_decimals)
    ids = frame[table.id_column].to_numpy()[active]
    try:
        canonical = validated_ids(ids.tolist(), policy, what="active loan")
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    totals = pd.Series(minor, dtype=np.float64).groupby(pd.Index(canonical), sort=False).sum()
    if totals.size and totals.max() > MAX_EXPOSURE:
        raise DataError(f"{where}: a customer's active exposure exceeds {MAX_EXPOSURE} minor units")
    return {customer: int(amount) for customer, amount in totals.items()}


@dataclass(frozen=True)
class TableChange:
    """What changed between two versions of a table: new or changed exposures, and customers gone."""

    upserted: dict[str, int]
    removed: list[str]

    @property
    def size(self) -> int:
        return len(self.upserted) + len(self.removed)


def changes(old: dict[str, int], new: dict[str, int]) -> TableChange:
    upserted = {customer: amount for customer, amount in new.items() if old.get(customer) != amount}
    removed = [customer for customer in old if customer not in new]
    return TableChange(upserted, removed)


def _read(path: Path, table: TableFormat, party: str) -> pd.DataFrame:
    columns = [table.id_column, table.amount_column, table.status_column]
    text_columns = {table.id_column: str, table.status_column: str}
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False, usecols=lambda c: c in columns)
        else:
            raise DataError(f"loans table {path} of {party!r}: expected a .csv, .csv.gz or .parquet file")
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"cannot read loans table {path} of {party!r}: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"loans table {path} of {party!r} lacks column(s) {missing}; it has {list(frame.columns)}")
    return frame[columns]


def _rows(positions: np.ndarray) -> str:
    """1-based data-row numbers (header excluded) of the first problems."""
    listed = ", ".join(str(int(p) + 1) for p in positions[:_LISTED])
    return listed + (f" (and {positions.size - _LISTED} more)" if positions.size > _LISTED else "")
