"""WOE/IV of host features without showing hosts the labels, and IV-based feature selection.

The guest encrypts each row's label y as one Paillier plaintext, in the slot layout of SecureBoost's
(g, h); each host bins its columns locally, multiplies the ciphertexts per (feature, bin), makes every
bit of the sums random but those a count of the bin's rows needs, and returns them packed with the
rows per bin; the guest decrypts per-bin event counts (non-events: the bin's other rows) and computes
WOE and IV. Hosts learn nothing about the labels; the guest learns the counts per host bin (what WOE
is made of) but not the split points, and a guest that encrypts other values than its labels reads
no more bits per bin than a count holds. ``select`` then keeps features by IV threshold or
top-k over all parties and tells each host which of its columns stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isthmus.errors import DataError
from isthmus.ml.binning import QuantileBinner, WoeIv, select_by_iv, woe_iv_from_counts
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.tree.gh import QuantizedGH
from isthmus.tree.gh_cipher import dense_histogram, guest_cipher, host_cipher

SETUP = "binning/setup"
HISTOGRAM = "binning/histogram"
SELECTION = "binning/selection"


def hetero_woe_iv_guest(channel: Channel, y: np.ndarray, hosts: Sequence[str], *, encryption: str = "paillier",
                        key_bits: int = 2048, timeout: float | None = None) -> dict[str, WoeIv]:
    """WOE/IV of every host's binned columns against the guest's 0/1 labels, by host name."""
    y = np.asarray(y)
    if not np.isin(y, (0, 1)).all():
        raise DataError("WOE/IV needs a 0/1 label")
    cipher = guest_cipher(encryption, key_bits)
    events = y.astype(np.int64)
    labels = cipher.encrypt(QuantizedGH(grad=events, hess=np.zeros_like(events)))
    for host in hosts:
        channel.send(host, SETUP, {"cipher": cipher.setup(), "n_rows": len(y), "labels": labels})
    results = {}
    for host in hosts:
        check = Inspect(host, HISTOGRAM)
        reply = check.mapping(channel.recv(host, HISTOGRAM, timeout), {"value_bins", "rows", "histogram"}, exact=True)
        value_bins = check.integers(reply["value_bins"], 1, 255, what="value bins")
        n_bins = value_bins + 1
        rows = check.integers(reply["rows"], 0, len(y), size=int(n_bins.sum()), what="rows per bin")
        columns = np.cumsum(n_bins) - n_bins  # where each column's bins start
        if (np.add.reduceat(rows, columns) != len(y)).any():
            check.fail(f"the rows of a column's bins must add up to the {len(y)} rows")
        event_counts = cipher.decode_counts(reply["histogram"], n_bins, _bit_lengths(rows), peer=host, tag=HISTOGRAM)
        if (event_counts > rows).any() or (np.add.reduceat(event_counts, columns) != events.sum()).any():
            check.fail(f"the events of a column's bins must add up to the {events.sum()} events, at most a bin's "
                       "rows each")
        n_columns = int(value_bins.max(initial=0)) + 1
        results[host] = woe_iv_from_counts(dense_histogram(event_counts, value_bins, n_columns),
                                           dense_histogram(rows - event_counts, value_bins, n_columns))
    return results


def hetero_woe_iv_host(channel: Channel, X: np.ndarray, guest: str = "guest", *, bins: int = 32,
                       encryption: str = "paillier", timeout: float | None = None) -> QuantileBinner:
    """The host's side: bins its columns (returned, fitted), sums the guest's encrypted labels per bin."""
    binner = QuantileBinner(bins).fit(X)
    binned = binner.transform(X)
    value_bins = binner.value_bins_
    check = Inspect(guest, SETUP)
    setup = check.mapping(channel.recv(guest, SETUP, timeout), {"cipher", "n_rows", "labels"}, exact=True)
    check.integer(setup["n_rows"], len(binned), len(binned), "row count (must equal this host's rows)")
    cipher = host_cipher(encryption, setup["cipher"], peer=guest, tag=SETUP)
    cipher.load(setup["labels"], len(binned), peer=guest, tag=SETUP)
    compact = np.where(binned == binner.missing_bin, value_bins[None, :], binned).astype(np.uint8)
    n_bins = value_bins + 1
    histogram = cipher.histograms([(np.arange(len(binned)), compact)], n_bins)[0]
    rows = np.concatenate([np.bincount(column, minlength=bins) for column, bins in zip(compact.T, n_bins.tolist())])
    histogram = cipher.mask_counts(histogram, n_bins, _bit_lengths(rows))
    channel.send(guest, HISTOGRAM, {"value_bins": value_bins, "rows": rows, "histogram": histogram})
    return binner


def _bit_lengths(counts: np.ndarray) -> np.ndarray:
    """The bits of each count: what an honest count of events among that many rows can need."""
    return np.array([int(count).bit_length() for count in counts.tolist()], dtype=np.int64)


def select_features_guest(channel: Channel, iv: dict[str, np.ndarray], *, threshold: float | None = None,
                          top_k: int | None = None) -> dict[str, np.ndarray]:
    """Keep masks per party from IVs of all parties (this guest's under ``channel.party``); hosts are told theirs."""
    parties = list(iv)
    keep = select_by_iv(np.concatenate([iv[p] for p in parties]), threshold=threshold, top_k=top_k)
    bounds = np.cumsum([0] + [len(iv[p]) for p in parties])
    masks = {p: keep[lo:hi] for p, lo, hi in zip(parties, bounds[:-1], bounds[1:])}
    for party, mask in masks.items():
        if party != channel.party:
            channel.send(party, SELECTION, mask)
    return masks


def select_features_host(channel: Channel, n_features: int, guest: str = "guest",
                         timeout: float | None = None) -> np.ndarray:
    """Which of this host's columns the guest's selection keeps."""
    return Inspect(guest, SELECTION).mask(channel.recv(guest, SELECTION, timeout), n_features, "selection")
