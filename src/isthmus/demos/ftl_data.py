"""A transfer-learning split: a guest with labels and a host with other columns and mostly other rows.

Both parties' columns are noisy views of one hidden profile per customer (as a bank's and a
retailer's records of the same people would be), the label depends on the profile, and only
``overlap`` customers appear at both. The host's other rows' true labels are kept apart, for judging
the host's predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_ftl_frames(*, guest_rows: int = 600, host_rows: int = 500, overlap: int = 150, latent: int = 3,
                    seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(guest table with label y, host table, host's non-shared rows' true labels)."""
    rng = np.random.default_rng(seed)
    total = guest_rows + host_rows - overlap
    profile = rng.normal(size=(total, latent))
    y = (profile @ rng.normal(size=latent) + 0.3 * rng.normal(size=total) > 0).astype(int)
    ids = np.array([f"c{i:06d}" for i in rng.permutation(total)])
    guest_x = np.tanh(profile @ rng.normal(size=(latent, 6))) + 0.2 * rng.normal(size=(total, 6))
    host_x = profile @ rng.normal(size=(latent, 5)) + 0.3 * rng.normal(size=(total, 5))
    g, h = np.arange(guest_rows), np.arange(guest_rows - overlap, total)
    guest = pd.DataFrame(guest_x[g], columns=[f"g{j}" for j in range(6)]).assign(id=ids[g], y=y[g])
    host = pd.DataFrame(host_x[h], columns=[f"h{j}" for j in range(5)]).assign(id=ids[h])
    truth = pd.DataFrame({"id": ids[guest_rows:], "y": y[guest_rows:]})
    return guest.sample(frac=1, random_state=seed), host.sample(frac=1, random_state=seed + 1), truth


def write_ftl_data(folder: Path, **sizes: int) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "guest.csv", folder / "host.csv", folder / "host_truth.csv"
    for frame, path in zip(make_ftl_frames(**sizes), paths):
        frame.to_csv(path, index=False)
    return paths
