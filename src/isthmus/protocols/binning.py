"""WOE/IV of host features without showing hosts the labels, and IV-based feature selection.

The guest encrypts each row's (event, non-event) pair, i.e. (y, 1 - y), as one Paillier plaintext,
with the same packing as SecureBoost's (g, h); each host bins its columns locally, multiplies the
ciphertexts per (feature, bin) and returns them packed; the guest decrypts per-bin event counts and
computes WOE and IV. Hosts learn nothing about the labels; the guest learns the counts per host bin
(what WOE is made of) but not the split points. ``select`` then keeps features by IV threshold or
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
    labels = cipher.encrypt(QuantizedGH(grad=events, hess=1 - events))
    for host in hosts:
        channel.send(host, SETUP, {"cipher": cipher.setup(), "n_rows": len(y), "labels": labels})
    results = {}
    for host in hosts:
        check = Inspect(host, HISTOGRAM)
        reply = check.mapping(channel.recv(host, HISTOGRAM, timeout), {"value_bins", "histogram"}, exact=True)
        value_bins = check.integers(reply["value_bins"], 1, 255, what="value bins")
        event_counts, non_event_counts = cipher.decode(reply["histogram"], value_bins + 1, peer=host, tag=HISTOGRAM)
        n_columns = int(value_bins.max(initial=0)) + 1
        results[host] = woe_iv_from_counts(dense_histogram(event_counts, value_bins, n_columns),
                                           dense_histogram(non_event_counts, value_bins, n_columns))
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
    histogram = cipher.histograms([(np.arange(len(binned)), compact)], value_bins + 1)[0]
    channel.send(guest, HISTOGRAM, {"value_bins": value_bins, "histogram": histogram})
    return binner


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
