"""A host of hetero linear models: holds features only, keeps its own coefficients.

The host follows the guest's orders: for a training batch it sends encrypted partial predictions,
receives the encrypted residual, computes its encrypted gradient, has it decrypted masked by the
arbiter and updates its weights. It sends plaintext only for prediction (its partial scores), which
is what joint prediction means. It tells the guest its feature count at the start and refuses any
batch too small for the widest party (batches.py): over such a batch its own decrypted gradient
would give it the guest's labels, and the guest's gradient would give the guest its partial scores.
"""

from __future__ import annotations

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.ml.optim import apply_penalty, make_optimizer
from isthmus.algorithms.hetero_linear import batches, cipher, tags
from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.config import LinearConfig
from isthmus.algorithms.hetero_linear.sigmoid import check_partial_scores
from isthmus.protocols.validate import expect_cipher, expect_dict, expect_indices
from isthmus.transport.channel import Channel


class HeteroLinearHost:
    def __init__(self, config: LinearConfig | None = None):
        self.config = config or LinearConfig()
        self.coef_: np.ndarray | None = None  # (n_features, n_models)

    def fit(self, channel: Channel, X: np.ndarray, *, guest: str, arbiter: str) -> HeteroLinearHost:
        """Train until the guest says the fit is done; the host's part of the model is ``coef_``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        with aborting_peers(channel, "host"):
            public_key = channel.recv(arbiter, tags.PUBLIC_KEY)
            channel.send(guest, tags.FEATURES, X.shape[1])
            self._trainer = _HostTrainer(self.config, channel, X, public_key, guest, arbiter)
            self._serve(channel, X, guest, training=True)
        return self

    def serve_scores(self, channel: Channel, X: np.ndarray, *, guest: str) -> None:
        """Answer the guest's scoring requests for rows of ``X`` until it says finish."""
        self._serve(channel, np.ascontiguousarray(X, dtype=np.float64), guest, training=False)

    def _serve(self, channel: Channel, X: np.ndarray, guest: str, *, training: bool) -> None:
        while True:
            order = expect_dict(channel.recv(guest, tags.CONTROL), {"op"}, peer=guest, tag=tags.CONTROL)
            op = order["op"]
            if op == "score":
                rows = expect_indices(order.get("rows"), upper=len(X), peer=guest, tag=tags.CONTROL)
                channel.send(guest, tags.SCORES, X[rows] @ self._coef_for_scoring())
            elif op == "finish":
                return
            elif training and op == "start":
                features = batches.expect_feature_counts(order.get("features"), peer=guest, tag=tags.CONTROL)
                self._trainer.start(_positive_int(order.get("models"), guest), features)
            elif training and op == "batch":
                rows = expect_indices(order.get("rows"), upper=len(X), peer=guest, tag=tags.CONTROL)
                batches.check_batch(rows, self._trainer.min_rows, peer=guest, tag=tags.CONTROL)
                self._trainer.train_batch(rows, _model_index(order, self._trainer.coef.shape[1], guest))
            elif training and op == "keep-best":
                self._trainer.keep_best(_model_index(order, self._trainer.coef.shape[1], guest))
            elif training and op == "fit-done":
                self.coef_ = self._trainer.final_coef()
                return
            else:
                raise ProtocolError(f"unexpected order {op!r}", peer=guest, tag=tags.CONTROL)

    def _coef_for_scoring(self) -> np.ndarray:
        return self.coef_ if self.coef_ is not None else self._trainer.coef


class _HostTrainer:
    """The host's training state: weights and one optimiser per model (one-vs-rest needs several)."""

    def __init__(self, config: LinearConfig, channel: Channel, X: np.ndarray, public_key, guest: str, arbiter: str):
        self.config, self.channel, self.X = config, channel, X
        self.public_key, self.guest, self.arbiter = public_key, guest, arbiter
        self.coef = np.zeros((X.shape[1], 0))
        self.min_rows = 0  # set by start()

    def start(self, n_models: int, features: dict[str, int]) -> None:
        """``features``: every party's feature count as the guest announces it; this host checks its own
        (the arbiter holds the others to theirs) and refuses batches too small for the widest party."""
        mine = self.channel.party
        if features.get(mine) != self.X.shape[1] or self.guest not in features:
            raise ProtocolError(f"the guest announced feature counts {features}, but host {mine!r} has "
                                f"{self.X.shape[1]} features", peer=self.guest, tag=tags.CONTROL)
        self.min_rows = batches.min_batch_rows(self.config.rows_per_feature, features)
        self.coef = np.zeros((self.X.shape[1], n_models))
        self.best = self.coef.copy()
        self.optimizers = [
            make_optimizer(self.config.optimizer, learning_rate=self.config.learning_rate, decay=self.config.decay)
            for _ in range(n_models)
        ]

    def train_batch(self, rows: np.ndarray, model: int) -> None:
        channel, guest = self.channel, self.guest
        x = self.X[rows]
        partial = x @ self.coef[:, model]
        if self.config.exact_sigmoid:
            check_partial_scores(partial, self.channel.party)
        encrypted_sq = cipher.encrypt(self.public_key, np.array([partial @ partial]))
        channel.send(guest, tags.PARTIAL, {"u": cipher.encrypt(self.public_key, partial), "u_sq": encrypted_sq})
        msg = expect_dict(channel.recv(guest, tags.RESIDUAL), {"residual", "partners"}, peer=guest, tag=tags.RESIDUAL)
        residual = expect_cipher(msg["residual"], self.public_key, size=len(rows), peer=guest, tag=tags.RESIDUAL)
        if msg["partners"]:
            self._send_cross_term(partial, msg["partners"])
        encrypted_grad = cipher.weighted_sums(x.T, residual, self.config.precision)
        grad = cipher.decrypt_via_arbiter(channel, self.arbiter, encrypted_grad, x.shape[1])
        weights = self.coef[:, model]
        grad = apply_penalty(weights, grad * cipher.residual_scale(self.config, len(rows)),
                             penalty=self.config.penalty, alpha=self.config.alpha)
        self.coef[:, model] = self.optimizers[model].step(weights, grad)

    def _send_cross_term(self, partial: np.ndarray, partners) -> None:
        """The guest's loss needs u_self . u_other for every later host: encrypted inner products."""
        if not isinstance(partners, list):
            raise ProtocolError("partners must be a list", peer=self.guest, tag=tags.RESIDUAL)
        total = None
        for other in partners:
            other = expect_cipher(other, self.public_key, size=len(partial), peer=self.guest, tag=tags.RESIDUAL)
            term = cipher.weighted_sums(partial[None, :], other, cipher.VALUE_PRECISION // 2)
            total = term if total is None else total + term
        self.channel.send(self.guest, tags.CROSS_REPLY, total)

    def keep_best(self, model: int) -> None:
        self.best[:, model] = self.coef[:, model]

    def final_coef(self) -> np.ndarray:
        return self.best.copy() if self.config.early_stopping_rounds else self.coef.copy()


def _positive_int(value, peer: str) -> int:
    if type(value) is not int or not 1 <= value <= 1000:
        raise ProtocolError(f"bad number of models {value!r}", peer=peer, tag=tags.CONTROL)
    return value


def _model_index(order: dict, n_models: int, peer: str) -> int:
    model = order.get("model")
    if type(model) is not int or not 0 <= model < n_models:
        raise ProtocolError(f"bad model index {model!r}", peer=peer, tag=tags.CONTROL)
    return model
