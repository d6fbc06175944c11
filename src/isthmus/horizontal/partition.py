"""Split one data set into client shards for experiments: IID, label skew (Dirichlet), quantity skew.

Each function returns one array of row indices per client; every row goes to exactly one client.
"""

from __future__ import annotations

import numpy as np

from isthmus.errors import ConfigError


def iid(n_rows: int, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Rows shuffled and dealt into ``n_clients`` shards whose sizes differ by at most one."""
    _check(n_rows, n_clients)
    return [np.sort(part) for part in np.array_split(np.random.default_rng(seed).permutation(n_rows), n_clients)]


def dirichlet_label_skew(
    labels: np.ndarray, n_clients: int, alpha: float, seed: int = 0, min_rows: int = 1
) -> list[np.ndarray]:
    """Each class spread over clients in Dirichlet(``alpha``) proportions: small alpha, few classes per client.

    Redrawn until every client has at least ``min_rows`` rows (the usual recipe, Hsu et al. 2019).
    """
    labels = np.asarray(labels)
    _check(len(labels), n_clients)
    if alpha <= 0:
        raise ConfigError(f"alpha must be positive, got {alpha}")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        shards: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * len(rows)).astype(int)[:-1]
            for shard, part in zip(shards, np.split(rows, cuts)):
                shard.append(part)
        parts = [np.sort(np.concatenate(shard)) for shard in shards]
        if min(len(p) for p in parts) >= min_rows:
            return parts
    raise ConfigError(f"could not give each of {n_clients} clients {min_rows} rows with alpha={alpha}")


def quantity_skew(
    n_rows: int, n_clients: int, alpha: float = 0.5, seed: int = 0, min_rows: int = 1
) -> list[np.ndarray]:
    """IID rows but shard sizes in Dirichlet(``alpha``) proportions (at least ``min_rows`` each)."""
    _check(n_rows, n_clients)
    if alpha <= 0 or n_rows < n_clients * min_rows:
        raise ConfigError(f"need alpha > 0 and at least {n_clients * min_rows} rows")
    rng = np.random.default_rng(seed)
    spare = n_rows - n_clients * min_rows
    sizes = min_rows + np.floor(rng.dirichlet(np.full(n_clients, alpha)) * spare).astype(int)
    sizes[: n_rows - sizes.sum()] += 1  # hand out the rounding remainder
    return [np.sort(part) for part in np.split(rng.permutation(n_rows), np.cumsum(sizes)[:-1])]


def _check(n_rows: int, n_clients: int) -> None:
    if n_clients < 1 or n_rows < n_clients:
        raise ConfigError(f"cannot split {n_rows} rows over {n_clients} clients")
