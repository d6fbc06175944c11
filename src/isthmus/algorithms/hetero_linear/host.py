"""A host of vertical linear models: holds features only, keeps its own coefficients.

The host follows the guest's orders: for a training batch it sends encrypted partial predictions
(for the exact residual, only its packed part of the arbiter's request and its part of the loss,
disguise.py), receives the encrypted residual, computes its encrypted gradient, has it decrypted
masked by the arbiter and updates its weights; for the guest's validation loss it sends the same
for the held-out rows, always the same rows. It sends plaintext only for prediction (its
partial scores), which is what joint prediction means, and only once training is over: its scores of
the same rows after every epoch would give the guest one linear projection of its columns per epoch.
It tells the guest its feature count at the start and refuses any
batch too small for the widest party (batches.py): over such a batch its own decrypted gradient
would give it the guest's labels, and the guest's gradient would give the guest its partial scores.
It also refuses a batch mixing rows of earlier ones: over batches drawn afresh, gradients stacked
over the epochs give the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isthmus.algorithms.base import MAX_CLASSES
from isthmus.compute.blocks import map_blocks
from isthmus.errors import ProtocolError
from isthmus.ml.optim import apply_penalty, make_optimizer
from isthmus.algorithms.hetero_linear import batches, cipher, tags
from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.options import LinearOptions
from isthmus.algorithms.hetero_linear.disguise import Disguise, check_partial_scores
from isthmus.protocols.commands import STOP, serve_orders, stop
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel


class HeteroLinearHost:
    def __init__(self, config: LinearOptions | None = None):
        self.config = config or LinearOptions()
        self.coef_: np.ndarray | None = None  # (n_features, n_models)

    def fit(self, channel: Channel, X: np.ndarray, *, guest: str, arbiter: str) -> HeteroLinearHost:
        """Train until the guest says the fit is done; the host's part of the model is ``coef_``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        with aborting_peers(channel, "host"):
            public_key = cipher.receive_public_key(channel, arbiter, self.config)
            channel.send(guest, tags.FEATURES, X.shape[1])
            self._trainer = _HostTrainer(self.config, channel, X, public_key, guest, arbiter)
            self._serve(channel, X, guest, training=True)
        return self

    def serve_scores(self, channel: Channel, X: np.ndarray, *, guest: str) -> None:
        """Answer the guest's scoring requests for rows of ``X`` until it says finish."""
        self._serve(channel, np.ascontiguousarray(X, dtype=np.float64), guest, training=False)

    def _serve(self, channel: Channel, X: np.ndarray, guest: str, *, training: bool) -> None:
        def score(order: dict, check: Inspect) -> None:
            rows = X[check.indices(order.get("rows"), len(X))]
            blocks = map_blocks(partial_scores, rows, self._coef_for_scoring())  # a big batch: on the cluster
            channel.send(guest, tags.SCORES, np.concatenate(blocks))

        handlers = ({"start": self._start, "batch": self._batch, "validate": self._validate,
                     "keep-best": self._keep_best, "fit-done": self._fit_done} if training
                    else {"score": score, "finish": stop})
        serve_orders(channel, guest, tags.CONTROL, handlers)

    def _start(self, order: dict, check: Inspect) -> None:
        models = check.integer(order.get("models"), 1, MAX_CLASSES, "number of models")
        columns = check.integer(order.get("columns"), 1, MAX_CLASSES // models, "weight columns per model")
        self._trainer.start(models, columns, batches.feature_counts(order.get("features"), check))

    def _batch(self, order: dict, check: Inspect) -> None:
        rows = check.indices(order.get("rows"), len(self._trainer.X))
        batches.check_batch(rows, self._trainer.min_rows, check)
        batch = self._trainer.partition.check(rows, check)
        self._trainer.train_batch(rows, self._model(order, check), self._exact(order, rows, batch, check))

    def _validate(self, order: dict, check: Inspect) -> None:
        rows = check.indices(order.get("rows"), len(self._trainer.X))
        batches.check_batch(rows, self._trainer.min_rows, check)
        self._trainer.validate(rows, self._model(order, check), self._exact(order, rows, "validation", check), check)

    def _keep_best(self, order: dict, check: Inspect) -> None:
        self._trainer.keep_best(self._model(order, check))

    def _fit_done(self, order: dict, check: Inspect) -> object:
        self._trainer.randomness.close()
        self.coef_ = self._trainer.final_coef()
        return STOP

    def _model(self, order: dict, check: Inspect) -> int:
        return check.integer(order.get("model"), 0, len(self._trainer.optimizers) - 1, "model index")

    def _exact(self, order: dict, rows: np.ndarray, batch: int | str, check: Inspect) -> Exact | None:
        """What the exact residual needs of an order (and nothing else may carry): the batch's secret order for
        the arbiter, and its labels [[y]], sent with the batch's first order and only then."""
        if not self.config.exact_sigmoid:
            return None
        disguise = Disguise.received(order.get("disguise"), len(rows), self._trainer.columns, check)
        return Exact(disguise, self._trainer.labels_of(batch, order.get("labels"), disguise, check))

    def _coef_for_scoring(self) -> np.ndarray:
        return self.coef_ if self.coef_ is not None else self._trainer.coef


def partial_scores(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Task entry point: this host's partial scores of a block of rows, ``(rows, models)``."""
    return X @ coef


@dataclass(frozen=True)
class Exact:
    """A batch's inputs for the exact residual: the guest's disguise and the batch's labels [[y]]."""

    disguise: Disguise
    labels: object

    def loss_term(self, partial: np.ndarray):
        """[[(e_ref - y) . u]], this host's part of the loss's linear term (e_ref: each row's reference class
        under the disguise, softmax only): an inner product with the guest's [[y]], never per-row values."""
        term = cipher.weighted_sums(-partial[None, :], self.labels, cipher.VALUE_PRECISION // 2)
        return term + self.disguise.references().ravel() @ partial if self.disguise.classes > 1 else term


class _HostTrainer:
    """The host's training state: weights and one optimiser per model (one-vs-rest needs several); a model
    has one weight column, or one per class (softmax), and sends and receives as many values per row."""

    def __init__(self, config: LinearOptions, channel: Channel, X: np.ndarray, public_key, guest: str, arbiter: str):
        self.config, self.channel, self.X = config, channel, X
        self.public_key, self.guest, self.arbiter = public_key, guest, arbiter
        self.coef = np.zeros((X.shape[1], 0))
        self.min_rows, self.columns, self.optimizers, self.parties = 0, 1, [], []  # set by start()
        self.partition = batches.Partition(len(X))
        self.validation_rows: np.ndarray | None = None
        self.labels: dict[int | str, object] = {}  # batch (or "validation") -> its [[y]], exact residual only
        self.randomness = cipher.Randomness(public_key)

    def start(self, n_models: int, columns: int, features: dict[str, int]) -> None:
        """``features``: every party's feature count as the guest announces it; this host checks its own
        (the arbiter holds the others to theirs) and refuses batches too small for the widest party."""
        mine = self.channel.party
        if features.get(mine) != self.X.shape[1] or self.guest not in features:
            raise ProtocolError(f"the guest announced feature counts {features}, but host {mine!r} has "
                                f"{self.X.shape[1]} features", peer=self.guest, tag=tags.CONTROL)
        self.min_rows = batches.min_batch_rows(self.config.rows_per_feature, features)
        self.parties = list(features)
        self.columns = columns
        self.coef = np.zeros((self.X.shape[1], n_models * columns))
        self.best = self.coef.copy()
        self.optimizers = [
            make_optimizer(self.config.optimizer, learning_rate=self.config.learning_rate, decay=self.config.decay)
            for _ in range(n_models)
        ]

    def train_batch(self, rows: np.ndarray, model: int, exact: Exact | None) -> None:
        channel, guest, columns = self.channel, self.guest, self.columns
        x = self.X[rows]
        weights = self.coef[:, self._columns(model)]
        partial = self._send_partial(x @ weights, exact)
        # the next batch's ciphertexts and this batch's masked gradient, drawn while the guest works
        sent = len(partial) + 1 if exact is None else exact.disguise.packed_size(self.public_key, len(self.parties)) + 1
        self.randomness.refill(sent + weights.size)
        check = Inspect(guest, tags.RESIDUAL)
        msg = check.mapping(channel.recv(guest, tags.RESIDUAL), {"residual", "partners"})
        residual = check.cipher(msg["residual"], self.public_key, size=len(partial),
                                what=f"residual ({len(rows)} rows x {columns} columns)")
        if msg["partners"]:
            self._send_cross_term(partial, check.sequence(msg["partners"], what="partners"), check)
        encrypted_grad = cipher.column_gradients(x, residual, columns, self.config.precision)
        grad = cipher.decrypt_via_arbiter(channel, self.arbiter, encrypted_grad, weights.size)
        grad = cipher.as_columns(grad, columns)
        grad = apply_penalty(weights, grad * cipher.residual_scale(self.config, len(rows)),
                             penalty=self.config.penalty, alpha=self.config.alpha)
        self.coef[:, self._columns(model)] = self.optimizers[model].step(weights, grad)

    def validate(self, rows: np.ndarray, model: int, exact: Exact | None, check: Inspect) -> None:
        """This host's part of the held-out rows' loss, for the guest's validation loss; the same rows every
        time, or a guest would difference the losses of overlapping sets for single rows' partial scores."""
        if self.validation_rows is None:
            self.validation_rows = rows
        elif not np.array_equal(rows, self.validation_rows):
            check.fail("a validation loss over other rows than the first one's")
        partial = self._send_partial(self.X[rows] @ self.coef[:, self._columns(model)], exact)
        check_partners = Inspect(self.guest, tags.PARTNERS)
        later_hosts = check_partners.sequence(self.channel.recv(self.guest, tags.PARTNERS), what="partners")
        if later_hosts:
            self._send_cross_term(partial, later_hosts, check_partners)

    def _send_partial(self, scores: np.ndarray, exact: Exact | None) -> np.ndarray:
        """Send [[u]] (row-major: a row's columns side by side) and [[|u|^2]]; or, for the exact residual, u's
        packed part of the arbiter's request in the guest's disguise and its part of the loss; returns u."""
        partial = scores.ravel()
        if exact is None:
            self.channel.send(self.guest, tags.PARTIAL, {
                "u": cipher.encrypt(self.public_key, partial),
                "u_sq": cipher.encrypt(self.public_key, np.array([partial @ partial]))})
            return partial
        check_partial_scores(partial, self.channel.party)
        self.channel.send(self.guest, tags.PARTIAL, {
            "disguised": exact.disguise.pack(self.public_key, partial, len(self.parties)),
            "loss": exact.loss_term(partial)})
        return partial

    def labels_of(self, batch: int | str, received, disguise: Disguise, check: Inspect):
        """The [[y]] of ``batch``: refused unless they come with its first order, and only then (a guest
        sending new labels each epoch would choose a new projection of this host's partial scores each time)."""
        known = self.labels.get(batch)
        if (known is None) == (received is None):
            check.fail("a batch's encrypted labels come with its first order, and only with it")
        if known is None:
            known = self.labels[batch] = check.cipher(received, self.public_key, size=len(disguise.picked),
                                                      what="encrypted labels")
        return known

    def _columns(self, model: int) -> slice:
        return slice(model * self.columns, (model + 1) * self.columns)

    def _send_cross_term(self, partial: np.ndarray, partners: list, check: Inspect) -> None:
        """The guest's loss needs u_self . u_other for every later host: encrypted inner products."""
        total = None
        for other in partners:
            other = check.cipher(other, self.public_key, size=len(partial))
            term = cipher.weighted_sums(partial[None, :], other, cipher.VALUE_PRECISION // 2)
            total = term if total is None else total + term
        self.channel.send(self.guest, tags.CROSS_REPLY, total)

    def keep_best(self, model: int) -> None:
        self.best[:, self._columns(model)] = self.coef[:, self._columns(model)]

    def final_coef(self) -> np.ndarray:
        return self.best.copy() if self.config.early_stopping_rounds else self.coef.copy()

