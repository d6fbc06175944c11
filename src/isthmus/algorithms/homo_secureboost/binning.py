"""Quantile bins agreed by horizontal clients from secure sums of counts, without showing a raw value.

Each client counts its values per cell of a shared grid; the aggregator sees only the sums over all
clients. The grid starts as powers of two (0, +-2**-32 ... +-2**64) and is refined where the bins'
quantiles fall: each cell holding a target rank is cut into :data:`PARTS` equal cells, and counted
again, :data:`REFINEMENTS` times. A split point is the upper edge of the cell holding its rank, so
after three refinements it sits within 1/4096 of a power-of-two interval of the exact quantile.

What the aggregator learns: the federation's counts per grid cell, i.e. an approximate histogram of
every column; the clients learn the split points (they are the model's thresholds anyway). Cells are
half-open ``(lo, hi]``, like the bins: "bin <= b" is exactly "value <= split point b".
"""

from __future__ import annotations

import numpy as np

#: The first grid: 0 and +-2**k for k in [-32, 64], ascending; cell i is (edges[i-1], edges[i]].
COARSE_EDGES = np.concatenate([-(2.0 ** np.arange(64, -33, -1)), [0.0], 2.0 ** np.arange(-32, 65)])
#: Equal cells one refined cell is cut into.
PARTS = 16
#: Refinement rounds after the coarse count.
REFINEMENTS = 3


# -- the client's side -------------------------------------------------------------------------------


def coarse_counts(X: np.ndarray) -> np.ndarray:
    """Per feature, the count of non-missing values in each coarse cell (two unbounded end cells
    included): shape ``(features, len(COARSE_EDGES) + 1)``."""
    counts = np.zeros((X.shape[1], len(COARSE_EDGES) + 1), dtype=np.int64)
    for f, column in enumerate(X.T):
        values = column[~np.isnan(column)]
        counts[f] = np.bincount(np.searchsorted(COARSE_EDGES, values, side="left"), minlength=counts.shape[1])
    return counts


def refined_counts(sorted_columns: list[np.ndarray], cells: list[np.ndarray]) -> np.ndarray:
    """Counts in the :data:`PARTS` equal parts of each requested cell, all features flattened.

    ``sorted_columns[f]`` are feature ``f``'s non-missing values, sorted; ``cells[f]`` is a ``(k, 2)``
    array of ``(lo, hi]`` cells.
    """
    out = []
    for values, intervals in zip(sorted_columns, cells):
        edges = _part_edges(intervals)
        at_or_below = np.searchsorted(values, edges.ravel(), side="right").reshape(edges.shape)
        out.append(np.diff(at_or_below, axis=1).ravel())
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, dtype=np.int64)


def _part_edges(intervals: np.ndarray) -> np.ndarray:
    """``(k, PARTS + 1)`` edges from each ``lo`` to its ``hi``."""
    steps = np.linspace(0.0, 1.0, PARTS + 1)
    lo, hi = intervals[:, :1], intervals[:, 1:]
    edges = lo + (hi - lo) * steps
    edges[:, -1] = hi[:, 0]  # exactly hi, whatever the rounding
    return edges


# -- the aggregator's side ---------------------------------------------------------------------------


class GridSketch:
    """One feature's federated counts on a grid that gets finer where its quantiles fall."""

    def __init__(self, counts: np.ndarray):
        if counts.shape != (len(COARSE_EDGES) + 1,):
            raise ValueError("coarse counts have the wrong length")
        self.edges = COARSE_EDGES.copy()
        self.counts = counts.astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def _target_cells(self, bins: int) -> np.ndarray:
        """Cells holding the ranks ``j * total / bins`` (j = 1 .. bins-1), ascending, distinct."""
        if self.total == 0:
            return np.empty(0, dtype=np.int64)
        ranks = np.arange(1, bins) * (self.total / bins)
        return np.unique(np.searchsorted(np.cumsum(self.counts), ranks, side="left"))

    def cells_to_refine(self, bins: int) -> np.ndarray:
        """``(k, 2)`` bounded cells ``(lo, hi]`` holding a target rank and more than one value."""
        cells = self._target_cells(bins)
        cells = cells[(cells > 0) & (cells < len(self.edges))]
        cells = cells[self.counts[cells] > 1]
        self._refining = cells
        return np.column_stack([self.edges[cells - 1], self.edges[cells]]) if cells.size else np.empty((0, 2))

    def refine(self, part_counts: np.ndarray) -> None:
        """Replace each cell of the last :meth:`cells_to_refine` by its parts' counts ``(k * PARTS,)``."""
        cells = self._refining
        part_counts = part_counts.reshape(len(cells), PARTS)
        if cells.size and not (part_counts.sum(axis=1) == self.counts[cells]).all():
            raise ValueError("refined counts do not add up to their cells' counts")
        intervals = np.column_stack([self.edges[cells - 1], self.edges[cells]]) if cells.size else np.empty((0, 2))
        inner_edges = _part_edges(intervals)[:, 1:-1]
        # cell i (edges[i-1], edges[i]] becomes PARTS cells: new edges go before edges[i]
        self.edges = np.insert(self.edges, np.repeat(cells, PARTS - 1), inner_edges.ravel())
        counts = list(self.counts)
        for cell, parts in sorted(zip(cells.tolist(), part_counts.tolist()), reverse=True):
            counts[cell: cell + 1] = parts
        self.counts = np.array(counts, dtype=np.int64)

    def split_points(self, bins: int) -> np.ndarray:
        """Upper edges of the cells holding the target ranks, where some value lies above them."""
        cells = self._target_cells(bins)
        above = self.total - np.cumsum(self.counts)
        cells = cells[(cells < len(self.edges))]
        cells = cells[above[cells] > 0]
        return np.unique(self.edges[cells])
