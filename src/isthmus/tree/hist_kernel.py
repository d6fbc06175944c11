"""A host's encrypted histograms: products of Paillier ciphertexts per (feature, bin), packed for sending.

This is where vertical SecureBoost spends its time: every row's ciphertext is multiplied (mod n^2) into
one bin of every feature. Written by hand because no library sums ciphertexts by group; the
arithmetic is gmpy2's. Three things keep it fast:

* bin-index grouping: rows are scattered into bins with one modular multiplication each and no
  per-bin Python objects beyond the running products;
* joint bins: features whose bin counts multiply to few cells are grouped, the rows are scattered
  once into the joint cells, and each feature's bins are products of its cells. Two 33-bin
  features over 100,000 rows cost 100,000 + 2 x 1,089 multiplications instead of 200,000;
* worker processes (``isthmus.crypto.parallel``), each taking a share of the features, with
  ciphertexts handed over as fixed-width bytes; or, when the party's compute backend is a cluster
  (:mod:`isthmus.compute`), tasks over partitions of the node's rows: the gradient ciphertexts are
  shared with the cluster once per tree, each task returns its rows' packed histograms, and the
  driver multiplies them together. Products mod n^2 do not depend on the order of their factors,
  so the histograms (and the trees) are exactly those of the local pool.

Bins of a feature come out packed ``slots`` per ciphertext (``isthmus.tree.gh`` describes the
layout): value ``j`` of a chunk is shifted by ``j * SLOT_BITS`` bits with ``c ** (2 ** SLOT_BITS)``.
"""

from __future__ import annotations

import gmpy2
import numpy as np
from gmpy2 import mpz

from isthmus.compute import Compute, current
from isthmus.crypto import parallel
from isthmus.tree.gh import SLOT_BITS

#: Below this many row x feature multiplications, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 2_000_000


def packed_count(n_bins: np.ndarray, slots: int) -> int:
    """Ciphertexts a histogram over features with ``n_bins`` bins each takes: each feature starts a new one."""
    return int(sum(-(-int(b) // slots) for b in n_bins))


class HistogramKernel:
    """Builds packed encrypted histograms for a host, over this process's crypto workers or its cluster."""

    def __init__(self, nsquare: int, slots: int, compute: Compute | None = None):
        self.nsquare = int(nsquare)
        self.width = (self.nsquare.bit_length() + 7) // 8
        self.slots = slots
        self.compute = compute or current()
        self._shared: tuple[np.ndarray, object] | None = None  # a tree's ciphertexts and their cluster handle

    def build(self, ciphertexts: np.ndarray, nodes: list[tuple[np.ndarray, np.ndarray]],
              n_bins: np.ndarray) -> list[list[mpz]]:
        """Per node, the packed histogram ciphertexts of every feature, features in column order.

        ``ciphertexts`` is a (rows, width) uint8 array of fixed-width big-endian ciphertexts;
        ``nodes`` holds, per node, the positions of its rows in it and their bins ``(rows, features)``
        (missing values already moved to bin ``n_bins[f] - 1``).
        """
        spread = sum(positions.size * len(n_bins) for positions, _ in nodes) >= PARALLEL_THRESHOLD
        if spread and self.compute.remote:
            return self._build_by_rows(ciphertexts, nodes, n_bins)
        shares = parallel.chunks(len(n_bins), parallel.workers() if spread else 1)
        tasks, owner = [], []
        for node, (positions, binned) in enumerate(nodes):
            data = ciphertexts[positions].tobytes()
            for share in shares:
                tasks.append((self.nsquare, self.width, data, binned[:, share.start:share.stop],
                              n_bins[share.start:share.stop], self.slots))
                owner.append(node)
        results = (parallel.in_processes(packed_histograms, tasks, self.compute) if spread
                   else [packed_histograms(*t) for t in tasks])
        built: list[list[mpz]] = [[] for _ in nodes]
        for node, data in zip(owner, results):
            built[node].extend(_parse(data, self.width))
        return built

    def _build_by_rows(self, ciphertexts: np.ndarray, nodes: list[tuple[np.ndarray, np.ndarray]],
                       n_bins: np.ndarray) -> list[list[mpz]]:
        """Per node, tasks over partitions of its rows; the driver multiplies their packed histograms."""
        modulus = mpz(self.nsquare)
        rows = sum(positions.size for positions, _ in nodes)
        with self.compute.pool(rows) as pool:
            shared = self._share(ciphertexts)
            futures = [[pool.submit(partition_histograms, self.nsquare, self.width, shared, positions[part],
                                    binned[part], n_bins, self.slots)
                        for part in _row_parts(positions.size, pool.workers)]
                       for positions, binned in nodes]
            built = []
            for node_futures in futures:
                total: list[mpz] | None = None
                for future in node_futures:
                    part = _parse(future.result(), self.width)
                    total = part if total is None else [a * b % modulus for a, b in zip(total, part)]
                built.append(total if total is not None else [mpz(1)] * packed_count(n_bins, self.slots))
        return built

    def _share(self, ciphertexts: np.ndarray) -> object:
        """The cluster's handle of a tree's ciphertexts: sent once per tree, not once per layer or task."""
        if self._shared is None or self._shared[0] is not ciphertexts:
            self._shared = ciphertexts, self.compute.share(ciphertexts)
        return self._shared[1]


def _row_parts(rows: int, workers: int) -> list[slice]:
    return [slice(r.start, r.stop) for r in parallel.chunks(rows, workers)]


def partition_histograms(nsquare: int, width: int, ciphertexts: np.ndarray, positions: np.ndarray,
                         binned: np.ndarray, n_bins: np.ndarray, slots: int) -> bytes:
    """Task entry point: packed histograms of one partition of a node's rows (``ciphertexts``: all rows)."""
    return packed_histograms(nsquare, width, ciphertexts[positions].tobytes(), binned, n_bins, slots)


def _parse(data: bytes, width: int) -> list[mpz]:
    return [mpz.from_bytes(data[i: i + width], "big") for i in range(0, len(data), width)]


def packed_histograms(nsquare: int, width: int, data: bytes, binned: np.ndarray, n_bins: np.ndarray,
                      slots: int) -> bytes:
    """Worker entry point: packed histogram ciphertexts of the given features, as fixed-width bytes."""
    modulus = mpz(nsquare)
    ciphertexts = _parse(data, width)
    out = []
    for group in _joint_groups(n_bins, len(ciphertexts)):
        for bins in _group_bin_products(ciphertexts, binned[:, group], n_bins[group], modulus):
            out.extend(_pack(bins, slots, modulus))
    return b"".join(int(c).to_bytes(width, "big") for c in out)


def _joint_groups(n_bins: np.ndarray, rows: int) -> list[list[int]]:
    """Consecutive features grouped while marginalising their joint cells stays cheap next to a row pass
    (cells x features <= rows / 2); a feature that does not fit starts the next group."""
    groups: list[list[int]] = []
    cells = 0
    for f, bins in enumerate(n_bins.tolist()):
        if groups and cells * bins * (len(groups[-1]) + 1) <= rows // 2:
            groups[-1].append(f)
            cells *= bins
        else:
            groups.append([f])
            cells = bins
    return groups


def _group_bin_products(ciphertexts: list[mpz], binned: np.ndarray, n_bins: np.ndarray,
                        modulus: mpz) -> list[list[mpz | None]]:
    """Per feature of the group, the product of ciphertexts per bin (None: empty bin)."""
    if len(n_bins) == 1:
        return [_scatter_product(ciphertexts, binned[:, 0].astype(np.int64), int(n_bins[0]), modulus)]
    strides = np.append(np.cumprod(n_bins[::-1])[::-1][1:], 1).astype(np.int64)  # row-major cell index
    cell_of_row = binned.astype(np.int64) @ strides
    joint = _scatter_product(ciphertexts, cell_of_row, int(np.prod(n_bins)), modulus)
    occupied = np.array([i for i, c in enumerate(joint) if c is not None], dtype=np.int64)
    cell_products = [joint[i] for i in occupied.tolist()]
    return [_scatter_product(cell_products, occupied // stride % bins, int(bins), modulus)
            for stride, bins in zip(strides.tolist(), n_bins.tolist())]


def _scatter_product(values: list[mpz], keys: np.ndarray, n_keys: int, modulus: mpz) -> list[mpz | None]:
    """Product mod ``modulus`` of ``values`` per key: the first value of a key is taken as is, every
    further one costs one multiplication."""
    products: list[mpz | None] = [None] * n_keys
    keys_present, first = np.unique(keys, return_index=True)
    for key, i in zip(keys_present.tolist(), first.tolist()):
        products[key] = values[i]
    rest = np.ones(len(keys), dtype=bool)
    rest[first] = False
    rest_positions = np.flatnonzero(rest)
    for key, i in zip(keys[rest_positions].tolist(), rest_positions.tolist()):
        products[key] = products[key] * values[i] % modulus
    return products


def _pack(bins: list[mpz | None], slots: int, modulus: mpz) -> list[mpz]:
    """Chunks of ``slots`` bins as one ciphertext each: ``prod_j c_j ** (2 ** (j * SLOT_BITS))`` by Horner."""
    shift = mpz(1) << SLOT_BITS
    packed = []
    for start in range(0, len(bins), slots):
        acc = None
        for c in reversed(bins[start: start + slots]):
            if acc is not None:
                acc = gmpy2.powmod(acc, shift, modulus)
            if c is not None:
                acc = c if acc is None else acc * c % modulus
        packed.append(mpz(1) if acc is None else acc)
    return packed
