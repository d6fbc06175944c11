"""Generated loans tables with known overlaps, and the plaintext truth to check answers against.

For the demo, tests and benchmarks only: the truth is computed by pooling every table in one
place, which a real consortium never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from isthmus.query.config import TableFormat

ACTIVE, CLOSED = "active", "closed"


def generate_loans(institutions: Sequence[str], customers: int, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """One loans table per institution: ``customers`` distinct customers each, drawn from a population
    twice that size (so any two institutions share about half their customers); a fifth of the
    customers have a second loan; 80% of loans are active. Columns follow :class:`TableFormat`'s defaults.
    """
    rng = np.random.default_rng(seed)
    population = 2 * customers
    tables = {}
    for institution in institutions:
        chosen = rng.choice(population, size=customers, replace=False)
        second = chosen[rng.random(customers) < 0.2]
        owners = np.concatenate([chosen, second])
        loans = owners.size
        tables[institution] = pd.DataFrame({
            "customer_id": pd.Series(owners).map("C{:09d}".format),
            "amount": np.round(rng.uniform(500, 50_000, loans), 2),
            "status": np.where(rng.random(loans) < 0.8, ACTIVE, CLOSED),
            "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, loans), unit="D"),
        })
    return tables


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    """Each institution's loans table as ``folder/<name>.csv``; returns the paths by institution."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.csv" for name in tables}
    for name, frame in tables.items():
        frame.to_csv(paths[name], index=False)
    return paths


def truth(tables: dict[str, pd.DataFrame], asker: str, ids: Sequence[str], *, decimals: int = 2,
          table: TableFormat | None = None) -> list[tuple[int, int]]:
    """Per id: (other institutions with an active loan, their total active amount in minor units)."""
    table = table or TableFormat()
    totals: dict[str, list[int]] = {}
    for institution, frame in tables.items():
        if institution == asker:
            continue
        active = frame[frame[table.status_column].isin(table.active_statuses)]
        minor = np.rint(active[table.amount_column].to_numpy() * 10**decimals)
        sums = pd.Series(minor).groupby(active[table.id_column].to_numpy()).sum()
        for customer, amount in sums.items():
            totals.setdefault(customer, []).append(int(amount))
    return [(len(totals.get(i, [])), sum(totals.get(i, []))) for i in ids]
