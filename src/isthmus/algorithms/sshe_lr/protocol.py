"""One party's side of hetero_lr_sshe: its features, its key pair and two share vectors.

Every weight vector lives as additive shares (shares.py): the guest's weights w_g = u_g + v_g with
u_g at the guest and v_g at the host, the host's w_h = u_h + v_h with u_h at the host and v_h at
the guest. One batch of rows (the guest picks them):

1. scores: each party sends [[its share of the other's weights]] under its own key; each returns
   [[X_mine @ that share - r]] and keeps r; so z = X_g w_g + X_h w_h ends up shared.
2. sigmoid (:func:`residual`): both map their share of z onto the circle of fourier.py and split the
   series' terms: for odd k the host sends [[cos k b]], [[sin k b]] under its key, and the guest
   combines them with its own sin k a, cos k a and the labels into [[its half - y - r]], keeps r and
   returns it; for even k the roles swap (without labels). Both halves run at once, so each party
   encrypts half of the values, and each ends with a share of sigmoid(z) - y.
3. gradients: each party sends [[its share of the residual e]] under its own key; each returns
   [[X_mine.T @ that share - r]] and keeps r: both gradients end up shared like the weights.
4. update: each party steps its two share vectors locally (plain SGD with the L2 penalty is linear).

At the end each party sends the other its share of the other's weights: each learns only its own.
A softmax model (K >= 3 classes) runs steps 1 and 3 once per weight column and step 2 by softmax.py.
Scales: features 2^precision, weights and residuals 2^WEIGHT_BITS, trigonometric values 2^TRIG_BITS.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpz

from isthmus.algorithms.base import MAX_CLASSES
from isthmus.algorithms.sshe_lr import fourier, shares, tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.crypto.multiexp import row_products_of_powers
from isthmus.crypto.paillier import CipherArray, generate_keypair
from isthmus.crypto.keys import PaillierPublicKey
from isthmus.errors import DataError
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

#: Features must stay below 2^FEATURE_BITS in magnitude (after scaling): it bounds every masked product.
FEATURE_BITS = 16
WEIGHT_BITS = 24
TRIG_BITS = 24
#: Fractional bits of the step-size constants in the update (one truncation per step).
UPDATE_BITS = 64
#: Shares of z live on a circle of PERIOD * 2^(precision + WEIGHT_BITS) integer steps.
PERIOD_BITS = fourier.PERIOD.bit_length() - 1
assert 1 << PERIOD_BITS == fourier.PERIOD


class Side:
    """What guest and host do alike; ``first`` marks the guest (it truncates the other way). A softmax model
    has ``columns`` = K weight columns per party: the guest announces K in its hello (hosts learn K and
    nothing else about the labels), and every weight share vector is row-major (feature, class)."""

    def __init__(self, options: SSHEOptions, channel: Channel, peer: str, X: np.ndarray, *, first: bool,
                 penalized: np.ndarray, peer_penalized_last: bool | None = None, columns: int = 1):
        self.options, self.channel, self.peer, self.first = options, channel, peer, first
        self.fx = options.precision
        limit = 2.0 ** FEATURE_BITS
        if X.size and not np.all(np.abs(X) < limit):
            raise DataError(f"party {channel.party!r}: a feature value reaches {limit:g} after scaling; "
                            "hetero_lr_sshe needs |x| < 2^16 (turn on scale, or clip outliers)")
        self.X = np.rint(np.ldexp(X, self.fx)).astype(np.int64)
        self.public_key, self.private_key = generate_keypair(options.key_bits)
        hello = {"key": self.public_key, "features": X.shape[1]}
        if first and columns > 1:
            hello["columns"] = columns
        channel.send(peer, tags.HELLO, hello)
        check = Inspect(peer, tags.HELLO)
        received = channel.recv(peer, tags.HELLO)
        announced = not first and isinstance(received, dict) and "columns" in received  # only the guest names K
        hello = check.mapping(received, {"key", "features", "columns"} if announced else {"key", "features"}, exact=True)
        self.peer_key = checked_key(check, hello["key"], options.key_bits)
        self.peer_features = check.integer(hello["features"], 0, 1_000_000, "feature count")
        self.columns = columns if first else self._announced_columns(check, hello)
        self.penalized = np.repeat(penalized, self.columns)
        self.mine = [0] * (X.shape[1] * self.columns)  # my share of my weights
        self.theirs = [0] * (self.peer_features * self.columns)  # my share of the peer's weights
        peer_penalized = np.ones(self.peer_features, dtype=bool)
        if peer_penalized_last is not None and self.peer_features:
            peer_penalized[-1] = peer_penalized_last
        self.peer_penalized = np.repeat(peer_penalized, self.columns)

    @staticmethod
    def _announced_columns(check: Inspect, hello: dict) -> int:
        """The guest's K: absent for a binary model, else 3 .. MAX_CLASSES."""
        if "columns" not in hello:
            return 1
        return check.integer(hello["columns"], 3, MAX_CLASSES, "class count")

    # -- the symmetric steps ----------------------------------------------------------------------
    def exchange(self, rows: np.ndarray, mine: list[int], send_tag: str, reply_tag: str, *, transpose: bool,
                 peer_size: int, reply_size: int) -> tuple[list[int], list[int]]:
        """Send [[mine]] (my key); get the peer's [[its vector]] (its key) and return [[X @ it - r]] (or X.T
        @); decrypt what the peer returns for me. Returns (my share of X_mine @ theirs, my share of
        X_peer @ mine), each mod RING. Row-wise products (not transposed: one value per row) travel
        packed several to a ciphertext (shares.Packing); per-feature ones, few, one to a ciphertext."""
        channel, peer = self.channel, self.peer
        x = self.X[rows]
        matrix = x.T if transpose else x
        # a party without features in this pair (the guest beside a second host) neither needs nor makes products
        peer_works, i_work = self.peer_features > 0, self.X.shape[1] > 0
        kept, received = [0] * matrix.shape[0], [0] * reply_size
        if peer_works:
            channel.send(peer, send_tag, shares.encrypt(self.public_key, mine))
        if i_work:
            check = Inspect(peer, send_tag)
            theirs = check.cipher(channel.recv(peer, send_tag), self.peer_key, size=peer_size)
            if transpose:
                masked, kept = shares.masked_product(matrix, theirs, self._extra(matrix.shape[1]))
            else:
                masked, kept = shares.Packing(self.peer_key.bits, self._extra(matrix.shape[1])).product(matrix, theirs)
            channel.send(peer, reply_tag, masked)
        if peer_works:
            check = Inspect(peer, reply_tag)
            if transpose:
                reply = check.cipher(channel.recv(peer, reply_tag), self.public_key, size=reply_size)
                received = shares.decrypt(self.private_key, reply, self._extra(len(rows)), check)
            else:
                packing = shares.Packing(self.public_key.bits, self._extra(self.peer_features))
                reply = check.cipher(channel.recv(peer, reply_tag), self.public_key, size=packing.groups(reply_size))
                received = packing.decrypt(self.private_key, reply, reply_size, check)
        return kept, received

    def scores(self, rows: np.ndarray) -> list[int]:
        """My share of z for ``rows`` (scale 2^(precision + WEIGHT_BITS)), row-major (row, class); one exchange
        per weight column."""
        x, k = self.X[rows], self.columns
        columns = []
        for c in range(k):
            kept, received = self.exchange(rows, self.theirs[c::k], tags.WEIGHT_SHARE, tags.SCORE_SHARE,
                                           transpose=False, peer_size=len(self.mine) // k, reply_size=len(rows))
            columns.append(shares.add(shares.dot(x, self.mine[c::k]), kept, received))
        return interleave(columns)

    def step(self, rows: np.ndarray, residual: list[int], learning_rate: float) -> None:
        """Share the gradients of both weight matrices (one exchange per column of the row-major residual)
        and step both of my share vectors."""
        k = self.columns
        mine_gradient, theirs_gradient = [], []
        for c in range(k):
            e = residual[c::k]
            kept, received = self.exchange(rows, e, tags.RESIDUAL, tags.GRADIENT_SHARE, transpose=True,
                                           peer_size=len(rows), reply_size=self.peer_features)
            mine_gradient.append(shares.add(shares.dot(self.X[rows].T, e), kept))
            theirs_gradient.append(received)
        self.mine = self._update(self.mine, interleave(mine_gradient), self.penalized, learning_rate, len(rows))
        self.theirs = self._update(self.theirs, interleave(theirs_gradient), self.peer_penalized, learning_rate,
                                   len(rows))

    def _update(self, weights: list[int], gradient: list[int], penalized: np.ndarray, learning_rate: float,
                rows: int) -> list[int]:
        """w <- (1 - lr alpha) w - lr / rows * X.T e, on shares: w at 2^WEIGHT_BITS, the gradient at
        2^(precision + WEIGHT_BITS); both products land at 2^(WEIGHT_BITS + UPDATE_BITS), then truncate."""
        decay = [round((1.0 - learning_rate * self.options.l2 * p) * 2.0**UPDATE_BITS) for p in penalized]
        step = round(learning_rate / rows * 2.0 ** (UPDATE_BITS - self.fx))
        moved = [(w * d - g * step) % shares.RING for w, d, g in zip(weights, decay, gradient, strict=True)]
        return shares.truncate(moved, UPDATE_BITS, first=self.first)

    def circle(self, z_share: list[int]) -> np.ndarray:
        """(rows, TERMS) angles / 2 pi of k times my share of z on fourier.py's circle."""
        return fourier.angles(z_share, 1 << (PERIOD_BITS + self.fx + WEIGHT_BITS))

    def reveal(self) -> np.ndarray:
        """Swap shares of each other's weights: return my own weights (floats; features x K for a softmax model),
        the peer learns its own."""
        self.channel.send(self.peer, tags.REVEAL, self.theirs)
        check = Inspect(self.peer, tags.REVEAL)
        got = check.sequence(self.channel.recv(self.peer, tags.REVEAL), len(self.mine), what="weight shares")
        for value in got:
            check.integer(value, 0, shares.RING - 1, "weight share")
        weights = np.ldexp(np.array([shares.signed(w) for w in shares.add(self.mine, got)], dtype=np.float64),
                           -WEIGHT_BITS)
        return weights.reshape(-1, self.columns) if self.columns > 1 else weights

    def _extra(self, columns: int) -> int:
        """Bits bounding a masked product's |row sums|: ``columns`` features below 2^(precision + FEATURE_BITS)."""
        return max(columns, 1).bit_length() + self.fx + FEATURE_BITS


def interleave(columns: list[list[int]]) -> list[int]:
    """K equally long vectors as one row-major (index, column) vector."""
    return [value for row in zip(*columns, strict=True) for value in row]


def checked_key(check: Inspect, key: object, bits: int) -> PaillierPublicKey:
    """A peer's announced public key, refused unless a Paillier key of at least ``bits`` bits."""
    if not isinstance(key, PaillierPublicKey) or key.bits < bits:
        check.fail(f"the peer's public key must be a Paillier key of at least {bits} bits")
    return key


#: Column indices of the terms k = 2, 4, ... (the guest encrypts these) and k = 1, 3, ... (the host).
_EVEN = np.arange(1, fourier.TERMS, 2)
_ODD = np.arange(0, fourier.TERMS, 2)


def residual(side: Side, z_share: list[int], y: np.ndarray | None = None) -> list[int]:
    """My share of e = sigmoid(z) - y at 2^WEIGHT_BITS; ``y`` (the labels) at the guest, None at the host.

    sin k(a + b) = sin ka cos kb + cos ka sin kb: I send [[cos k theta | sin k theta]] of my terms (my
    key, each row shifted into its slot of the peer's packed sums) and meet the peer's with
    [alpha_k sin k theta | alpha_k cos k theta] of its terms, masked, plus 1/2 - y at the guest."""
    rows = len(z_share)
    angle = 2 * np.pi * side.circle(z_share)
    mine, theirs = (_EVEN, _ODD) if side.first else (_ODD, _EVEN)
    packing = shares.Packing(side.public_key.bits, 0)
    trig = np.rint(np.ldexp(np.hstack([np.cos(angle[:, mine]), np.sin(angle[:, mine])]), TRIG_BITS)).astype(np.int64)
    shifted = [int(value) << shift for row, shift in zip(trig.tolist(), packing.shifts(rows), strict=True)
               for value in row]  # row i's values in its slot of the peer's packed sums
    side.channel.send(side.peer, tags.TRIG, shares.encrypt(side.public_key, shifted))

    check = Inspect(side.peer, tags.TRIG)
    peer_trig = check.cipher(side.channel.recv(side.peer, tags.TRIG), side.peer_key, size=rows * 2 * len(theirs))
    factors = np.hstack([np.sin(angle[:, theirs]), np.cos(angle[:, theirs])]) * np.tile(fourier.COEFFICIENTS[theirs], 2)
    peer_packing = shares.Packing(side.peer_key.bits, 0)
    series = _packed_row_sums(peer_trig, np.rint(np.ldexp(factors, TRIG_BITS)).astype(np.int64), peer_packing)
    offset = [0] * peer_packing.groups(rows)
    if y is not None:  # 1/2 - y, each in its row's slot
        one = 1 << (2 * TRIG_BITS)
        for i, (label, shift) in enumerate(zip(y, peer_packing.shifts(rows), strict=True)):
            offset[i // peer_packing.per] += (one // 2 - int(label) * one) << shift
    masked, kept = peer_packing.masked(series + np.array(offset, dtype=object), rows)
    side.channel.send(side.peer, tags.RESIDUAL_SHARE, masked)

    check = Inspect(side.peer, tags.RESIDUAL_SHARE)
    reply = check.cipher(side.channel.recv(side.peer, tags.RESIDUAL_SHARE), side.public_key, size=packing.groups(rows))
    share = shares.add(kept, packing.decrypt(side.private_key, reply, rows, check))
    return shares.truncate(share, 2 * TRIG_BITS - WEIGHT_BITS, first=side.first)


def _packed_row_sums(encrypted, factors: np.ndarray, packing: shares.Packing):
    """[[sum_t sum_j factors[i, j] * v[i, j]]] per group of ``packing.per`` rows i of the flat (rows x
    columns) ciphertexts (the peer encrypted row i's values already shifted into its slot): one bucket
    multi-exponentiation per group, groups spread over this party's cores."""
    rows, columns = factors.shape
    padding = packing.groups(rows) * packing.per - rows
    bases = encrypted.ciphertexts() + [mpz(1)] * (padding * columns)
    exponents = np.vstack([factors, np.zeros((padding, columns), dtype=factors.dtype)])
    sums = row_products_of_powers(bases, exponents.reshape(packing.groups(rows), -1), encrypted.public_key.nsquare)
    return CipherArray.from_ciphertexts(encrypted.public_key, sums, (len(sums),), 0)
