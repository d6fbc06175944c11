"""WOE/IV binning against a deviating guest (in-process channel).

The host sums the guest's ciphertexts per (column, bin) and cannot see what they encrypt. A guest that
encrypts row i as 2**i instead of its label reads, in each bin's sum, which of those rows the bin holds:
the bins of 105 rows in every host column from one run. The host leaves only a count's bits readable.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_binning_protocol import data

from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.keys import generate_keypair
from isthmus.errors import ProtocolError
from isthmus.protocols.binning import HISTOGRAM, SETUP, hetero_woe_iv_guest, hetero_woe_iv_host
from isthmus.transport.local import LocalHub
from isthmus.tree.gh import SLOT_BITS, SUM_BITS, slots_per_plaintext

BINS = 8


def rows_read(bit_of_row, rows: int = 300) -> tuple[int, int]:
    """Run an honest host against a guest that encrypts ``2**bit_of_row(i)`` for row i (0 where that is None);
    returns how many rows it then places in the right bin of every host column, and the most rows the host put
    in one bin."""
    X_host, _ = data(rows)
    public_key, private_key = generate_keypair(1024)
    hub = LocalHub(["guest", "host"])
    fitted = {}
    host = threading.Thread(
        target=lambda: fitted.update(binner=hetero_woe_iv_host(hub.channel("host"), X_host, bins=BINS)))
    host.start()
    plaintexts = [0 if bit_of_row(i) is None else 1 << bit_of_row(i) for i in range(rows)]
    labels = CipherArray.from_ciphertexts(public_key, public_key.encrypt_integers(plaintexts), (rows,), 0, fresh=True)
    guest = hub.channel("guest")
    guest.send("host", SETUP, {"cipher": {"mode": "paillier", "slot_bits": SLOT_BITS, "public_key": public_key},
                               "n_rows": rows, "labels": labels})
    reply = guest.recv("host", HISTOGRAM, timeout=60)
    host.join(60)
    slots = slots_per_plaintext(public_key.bits)
    decrypted = iter(private_key.decrypt_raw(reply["histogram"]))
    sums = []  # per column, per bin (value bins, then the missing-value bin): the slot's bits
    for bins in (reply["value_bins"] + 1).tolist():
        column = []
        for start in range(0, bins, slots):
            packed = next(decrypted)
            column += [(packed >> (SLOT_BITS * j)) % (1 << SLOT_BITS) for j in range(min(slots, bins - start))]
        sums.append(column)
    binned = fitted["binner"].transform(X_host)
    truth = np.where(binned == fitted["binner"].missing_bin, fitted["binner"].value_bins_[None, :], binned)
    read = [row for row in range(rows) if bit_of_row(row) is not None
            and all([b for b, bits in enumerate(column) if bits >> bit_of_row(row) & 1] == [truth[row, c]]
                    for c, column in enumerate(sums))]
    return len(read), max(np.bincount(truth[:, c]).max() for c in range(truth.shape[1]))


@pytest.mark.parametrize("attack, bit_of_row", [
    ("a row per bit of the slot", lambda i: i if i < SLOT_BITS else None),
    ("a row per bit of the slot's upper half", lambda i: SUM_BITS + i if i < SUM_BITS else None),
])
def test_a_guest_encrypting_rows_for_labels_reads_no_more_than_a_count_holds(attack, bit_of_row):
    read, largest_bin = rows_read(bit_of_row)
    # A count of at most `largest_bin` rows has int(largest_bin).bit_length() bits: what an honest guest reads.
    assert read <= int(largest_bin).bit_length(), f"{attack}: {read} rows read"


def hostile_host_reply(rows: np.ndarray, events: np.ndarray, value_bins=(3, 2)) -> ProtocolError:
    """The error the guest raises on a host's reply (plaintext mode: the checks are the protocol's, not the
    cipher's) claiming ``rows`` and ``events`` per bin for two columns."""
    hub = LocalHub(["guest", "host"])
    y = np.array([0, 1] * 5)

    def host() -> None:
        channel = hub.channel("host")
        channel.recv("guest", SETUP, timeout=10)
        channel.send("guest", HISTOGRAM, {"value_bins": np.array(value_bins), "rows": rows,
                                          "histogram": {"grad": events, "hess": np.zeros_like(events)}})

    threading.Thread(target=host, daemon=True).start()
    with pytest.raises(ProtocolError) as caught:
        hetero_woe_iv_guest(hub.channel("guest"), y, ["host"], encryption="plaintext")
    assert caught.value.peer == "host"
    return caught.value


EVENTS = np.array([2, 2, 1, 0, 3, 2, 0])  # 5 per column, as the guest's labels hold


@pytest.mark.parametrize("rows, events, message", [
    (np.array([4, 3, 3, 0, 5, 4, 2]), EVENTS, "the rows of a column's bins must add up to the 10 rows"),
    (np.array([4, 3, 3, 0, 5, 5]), EVENTS, "rows per bin must hold 7 values"),
    (np.array([4, 3, 3, 0, 5, 6, -1]), EVENTS, "rows per bin out of range"),
    (np.array([4, 3, 3, 0, 2, 3, 5]), np.array([2, 2, 1, 0, 3, 2, 0]), "the events of a column's bins must add up"),
    (np.array([4, 3, 3, 0, 3, 5, 2]), np.array([2, 2, 1, 0, 0, 2, 3]), "at most a bin's rows each"),
    (np.array([4, 3, 3, 0, 5, 5, 0]), np.array([2, 2, 1, 0, 1, 2, 0]), "the events of a column's bins must add up"),
])
def test_a_host_reply_whose_counts_do_not_add_up_is_refused(rows, events, message):
    assert message in str(hostile_host_reply(rows, events))
