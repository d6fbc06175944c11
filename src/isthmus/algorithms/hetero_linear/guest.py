"""The guest of vertical linear models: holds the labels, coordinates training, combines predictions.

Per batch (white paper steps 2-4): hosts send encrypted partial predictions [[u_h]]; the guest forms
the encrypted residual [[d]] = sum [[u_h]] + (its own plaintext part) and sends it to the hosts; every
party computes its encrypted gradient X.T @ [[d]], masks it and has the arbiter decrypt it. The guest
also has the encrypted loss decrypted, from which it decides convergence. With the exact residual
(``residual: sigmoid``, the default for logistic models) the arbiter forms [[d]] from the parties' packed,
disguised scores, and the hosts send no per-row ciphertext (``_exact_terms``). Batches are never smaller
than the floor of batches.py (a short tail joins the previous batch), and are drawn once: every epoch
visits the same batches in a new order. A softmax model (multiclass with ``residual: sigmoid``,
softmax.py) has K weight columns per party, and every value above is K per row (flat, row-major);
one-vs-rest trains K one-column models one after the other, over the same batches. With early
stopping, the held-out rows' loss (``validation_fraction``) is formed the same way each epoch and only its
sum decrypted: the guest sees no host's partial scores before training is over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from isthmus.errors import DataError, ProtocolError
from isthmus.ml.optim import apply_penalty, make_optimizer
from isthmus.algorithms.hetero_linear import batches, cipher, tags
from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.options import LinearOptions
from isthmus.algorithms.hetero_linear.disguise import Disguise, check_partial_scores, packed_size
from isthmus.algorithms.hetero_linear.sigmoid import sigmoid_via_arbiter
from isthmus.algorithms.hetero_linear.softmax import softmax_via_arbiter
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

Progress = Callable[[dict], None]


class HeteroLinearGuest:
    def __init__(self, config: LinearOptions | None = None):
        self.config = config or LinearOptions()
        self.coef_: np.ndarray | None = None  # (n_features + intercept, n_models)
        self.classes_: np.ndarray | None = None
        self.history_: list[dict] = []

    # ----------------------------------------------------------------- training
    def fit(self, channel: Channel, X: np.ndarray, y: np.ndarray, *, hosts: list[str], arbiter: str,
            progress: Progress | None = None) -> HeteroLinearGuest:
        if not hosts:
            raise DataError("hetero training needs at least one host")
        self.hosts, self.arbiter, self.channel = list(hosts), arbiter, channel
        with aborting_peers(channel, "guest"):
            return self._fit(X, y, progress)

    def _fit(self, X: np.ndarray, y: np.ndarray, progress: Progress | None) -> HeteroLinearGuest:
        cfg, channel, arbiter = self.config, self.channel, self.arbiter
        self._X = self._design(X)
        targets = self._targets(np.asarray(y, dtype=np.float64))
        self.public_key = cipher.receive_public_key(channel, arbiter, cfg)
        self._randomness = cipher.Randomness(self.public_key)
        self._labelled: set[int] = set()  # first rows of the batches whose [[y]] the hosts have (exact residual)
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(self._X))
        n_val = int(round(cfg.validation_fraction * len(order)))
        self.validation_rows_, self.train_rows_ = np.sort(order[:n_val]), np.sort(order[n_val:])
        if len(self.train_rows_) == 0:
            raise DataError("the guest has no training rows left after the validation split")
        self.features_ = {channel.party: self._X.shape[1], **self._host_features()}
        edges = self._plan_batches(np.column_stack(targets), progress)  # refuse too few rows before training
        floor = batches.min_batch_rows(cfg.rows_per_feature, self.features_)
        if cfg.early_stopping_rounds and n_val < floor:  # every party refuses a loss over fewer, as such a batch
            raise DataError(f"early stopping: validation_fraction {cfg.validation_fraction:g} holds out {n_val} rows, "
                            f"fewer than the {floor} a batch needs ({cfg.rows_per_feature} per feature of the widest "
                            "party): hold out more, or stop without early_stopping_rounds")
        shuffled = rng.permutation(self.train_rows_)
        partition = [np.sort(shuffled[start:stop]) for start, stop in pairwise(edges)]
        self._label_rounds = len(partition) + bool(cfg.early_stopping_rounds)  # row sets whose [[y]] hosts get

        self._columns = targets[0].shape[1]
        self.coef_ = np.zeros((self._X.shape[1], len(targets) * self._columns))
        self._best = self.coef_.copy()
        start = {"features": self.features_, "columns": self._columns}
        channel.broadcast(self.hosts, tags.CONTROL, {"op": "start", "models": len(targets), **start})
        channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "start", **start})
        try:
            for model, target in enumerate(targets):
                self._fit_model(model, target, partition, rng, progress)
        finally:
            self._randomness.close()
        if cfg.early_stopping_rounds:
            self.coef_ = self._best
        channel.broadcast(self.hosts, tags.CONTROL, {"op": "fit-done"})
        channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "done"})
        return self

    def _host_features(self) -> dict[str, int]:
        """Each host's feature count: the batch size every party insists on grows with the widest."""
        counts = {}
        for host in self.hosts:
            counts[host] = self.channel.recv(host, tags.FEATURES)
            if type(counts[host]) is not int or not 0 <= counts[host] <= batches.MAX_FEATURES:
                raise ProtocolError(f"bad feature count {counts[host]!r}", peer=host, tag=tags.FEATURES)
        return counts

    def _plan_batches(self, targets: np.ndarray, progress: Progress | None) -> list[int]:
        """Batch boundaries over the shuffled training rows; no batch is small enough for a party to solve
        its decrypted gradients for the labels (batches.py). Rare labels carry less than a bit each, and
        K classes give K - 1 equations per feature, so the guest, which alone knows them, asks for
        proportionally more rows. ``targets``: every model's columns side by side; one-vs-rest models'
        full batches hold the same rows, so a host can combine their gradients as a softmax model's."""
        cfg, counts = self.config, self.features_
        widest = max(counts, key=counts.get)
        growth = batches.label_growth(targets[self.train_rows_])
        need = math.ceil(batches.min_batch_rows(cfg.rows_per_feature, counts) * growth)
        why = f"{cfg.rows_per_feature} rows per feature x {counts[widest]} features of {widest!r}"
        if growth > 1.005:
            why += f", times {growth:.2f} for what the labels reveal per row"
        edges = batches.plan_batches(len(self.train_rows_), cfg.batch_size, need, why=why)
        if progress and 0 < cfg.batch_size < edges[1] - edges[0]:  # else the operator sees it only in the log
            progress({"note": f"batch_size {cfg.batch_size} raised to {edges[1] - edges[0]} rows, the floor that keeps "
                              f"a batch's decrypted gradient from revealing rows ({why})"})
        return edges

    def _fit_model(self, model: int, target: np.ndarray, partition: list[np.ndarray], rng: np.random.Generator,
                   progress: Progress | None) -> None:
        """Every epoch visits the same batches (``partition``, drawn once for every model), in a new order:
        batches drawn afresh each epoch gave a host new equations over the same labels every epoch, and its
        decrypted gradients, stacked, gave them all (batches.py)."""
        cfg = self.config
        optimizer = make_optimizer(cfg.optimizer, learning_rate=cfg.learning_rate, decay=cfg.decay)
        penalized = np.ones((self._X.shape[1], self._columns), dtype=bool)
        penalized[-1] = not cfg.fit_intercept  # the intercept is never penalised
        previous_loss, best_val, stale = np.inf, np.inf, 0
        for epoch in range(cfg.epochs):
            loss_sum = 0.0
            for batch in rng.permutation(len(partition)):
                rows = partition[batch]
                loss_sum += self._train_batch(model, rows, target[rows], optimizer, penalized) * len(rows)
            loss = loss_sum / len(self.train_rows_)
            record = {"model": model, "epoch": epoch + 1, "epochs": cfg.epochs, "loss": loss,
                      "batch_rows": len(partition[0])}
            if cfg.early_stopping_rounds:  # else the held-out rows are for `evaluate` only: no loss, no decryption
                val_loss = self._validation_loss(model, target)
                record["validation_loss"] = val_loss
                if val_loss < best_val - 1e-12:
                    best_val, stale = val_loss, 0
                    self._best[:, self._model_columns(model)] = self.coef_[:, self._model_columns(model)]
                    self.channel.broadcast(self.hosts, tags.CONTROL, {"op": "keep-best", "model": model})
                else:
                    stale += 1
            self.history_.append(record)
            if progress:
                progress(record)
            if cfg.early_stopping_rounds and stale >= cfg.early_stopping_rounds:
                break
            if abs(previous_loss - loss) < cfg.tol:
                break
            previous_loss = loss

    def _train_batch(self, model: int, rows: np.ndarray, target: np.ndarray, optimizer, penalized: np.ndarray) -> float:
        cfg, channel, columns = self.config, self.channel, self._columns
        x, weights = self._X[rows], self.coef_[:, self._model_columns(model)]
        partials, residual, loss = self._encrypted_terms("batch", model, rows, target)
        for i, host in enumerate(self.hosts):
            channel.send(host, tags.RESIDUAL, {"residual": residual, "partners": self._partners(partials, i, loss)})
        # the next batch's fresh ciphertexts and this batch's masked gradient, drawn while the hosts work
        self._randomness.refill(self._batch_factors(len(rows)) + weights.size + 1)
        # hosts' gradients are on their way; the arbiter checks the batch size it is told
        channel.send(self.arbiter, tags.ARBITER_CONTROL, {"op": "decrypt", "rows": len(rows)})
        encrypted_loss = self._encrypted_loss(loss, partials)
        encrypted = cipher.concatenate([cipher.column_gradients(x, residual, columns, cfg.precision), encrypted_loss])
        decrypted = cipher.decrypt_via_arbiter(channel, self.arbiter, encrypted, weights.size + 1)
        grad = cipher.as_columns(decrypted[:-1], columns) * cipher.residual_scale(cfg, len(rows))
        grad = apply_penalty(weights, grad, penalty=cfg.penalty, alpha=cfg.alpha, penalized=penalized)
        self.coef_[:, self._model_columns(model)] = optimizer.step(weights, grad)
        return loss.constant + (loss.plain + decrypted[-1]) / len(rows)

    def _batch_factors(self, rows: int) -> int:
        """Random factors the guest spends on a batch's ciphertexts: a re-randomised residual per host, or,
        for the exact residual (the arbiter's fresh encryption, sent as is), its part of the arbiter's request
        and, while some batch has not had them yet, the batch's labels [[y]]."""
        if not self.config.exact_sigmoid:
            return rows * self._columns * len(self.hosts)
        labels = rows * self._columns if len(self._labelled) < self._label_rounds else 0
        return packed_size(self.public_key, rows, self._columns, len(self.hosts) + 1) + labels

    def _validation_loss(self, model: int, target: np.ndarray) -> float:
        """The loss of the held-out rows, formed under encryption as a batch's is, and only its sum decrypted.
        The hosts' partial scores of those rows in clear, every epoch, gave the guest one linear projection
        of their columns per epoch: after as many epochs as a host has columns, all of them up to a linear
        map (benchmarks/label_leakage.py lr-validation: R^2 1.00)."""
        channel, rows = self.channel, self.validation_rows_
        partials, _, loss = self._encrypted_terms("validate", model, rows, target[rows])
        for i, host in enumerate(self.hosts):
            channel.send(host, tags.PARTNERS, self._partners(partials, i, loss))
        channel.send(self.arbiter, tags.ARBITER_CONTROL, {"op": "decrypt-loss", "rows": len(rows)})
        encrypted_loss = self._encrypted_loss(loss, partials)
        decrypted = cipher.decrypt_via_arbiter(channel, self.arbiter, encrypted_loss, 1)
        return float(loss.constant + (loss.plain + decrypted[0]) / len(rows))

    def _encrypted_terms(self, op: str, model: int, rows: np.ndarray, target: np.ndarray) -> tuple:
        """Order the hosts' parts for ``rows`` (``op``: "batch" or "validate") and form the rows' encrypted
        residual and loss: (partials by host, [[d]], :class:`_Loss`)."""
        order = {"op": op, "rows": rows, "model": model}
        z_guest = (self._X[rows] @ self.coef_[:, self._model_columns(model)]).ravel()  # row-major: a row's columns
        if self.config.exact_sigmoid:
            return {}, *self._exact_terms(order, z_guest, target.ravel())
        self.channel.broadcast(self.hosts, tags.CONTROL, order)
        partials = self._partials(len(rows))
        hosts_sum = _total([u for u, _ in partials.values()])
        return partials, *self._quadratic_terms(z_guest, target.ravel(), hosts_sum)

    def _partials(self, rows: int) -> dict:
        """Every host's [[u_h]] (rows x columns, flat) and [[|u_h|^2]] for the rows just ordered."""
        partials = {}
        for host in self.hosts:
            check = Inspect(host, tags.PARTIAL)
            msg = check.mapping(self.channel.recv(host, tags.PARTIAL), {"u", "u_sq"})
            partials[host] = (check.cipher(msg["u"], self.public_key, size=rows * self._columns,
                                           what=f"partial scores ({rows} rows x {self._columns} columns)"),
                              check.cipher(msg["u_sq"], self.public_key, size=1))
        return partials

    def _partners(self, partials: dict, index: int, loss: _Loss) -> list:
        """The later hosts' [[u]], whose inner products with its own a host returns for a quadratic loss."""
        return [partials[other][0] for other in self.hosts[index + 1:]] if loss.quadratic else []

    def _encrypted_loss(self, loss: _Loss, partials: dict):
        """The loss's encrypted part: the hosts' own (exact residual), or linear . [[sum u]] + quadratic
        [[|sum u|^2]] (the cross terms from the hosts). Only this sum is decrypted, never its parts: they
        are inner products with host values."""
        if loss.hosts_sum is None:
            return loss.hosts_linear
        encrypted = cipher.weighted_sums(loss.linear[None, :], loss.hosts_sum, cipher.LOSS_PRECISION)
        if loss.quadratic:
            # sum over the rows of (sum_h u_h)^2 = sum_h |u_h|^2 + 2 sum_{h<k} u_h . u_k
            squares = _total([sq for _, sq in partials.values()])
            for host in self.hosts[:-1]:
                cross = Inspect(host, tags.CROSS_REPLY).cipher(self.channel.recv(host, tags.CROSS_REPLY),
                                                               self.public_key, size=1)
                squares = squares + cross + cross
            encrypted = encrypted + squares * loss.quadratic
        return encrypted

    def _quadratic_terms(self, z_guest: np.ndarray, target: np.ndarray, hosts_sum) -> tuple:
        """The encrypted residual [[d]] of rows whose scores are ``z_guest + [[sum_h u_h]]`` (regression, or the
        Taylor residual), and their loss as constant n + plain + linear . [[sum u]] + quadratic [[|sum u|^2]]."""
        if self.config.task == "regression":
            plain_residual = z_guest - target
            residual = hosts_sum + plain_residual
            linear_weights, quadratic, constant = plain_residual, 0.5, 0.0
            plain_loss = 0.5 * plain_residual @ plain_residual
        else:
            signed = 2.0 * target - 1.0
            residual = hosts_sum + (z_guest + 2.0 - 4.0 * target)
            linear_weights, quadratic, constant = 0.25 * z_guest - 0.5 * signed, 0.125, np.log(2.0)
            plain_loss = -0.5 * signed @ z_guest + 0.125 * z_guest @ z_guest
        return residual, _Loss(constant, plain_loss, linear_weights, quadratic, hosts_sum=hosts_sum)

    def _exact_terms(self, order: dict, z_guest: np.ndarray, target: np.ndarray) -> tuple:
        """The exact residual (sigmoid.py, softmax.py) and the loss. The order carries the batch's disguise and,
        the first time, its labels [[y]] (rows x columns, flat); each host sends its packed part of the
        disguised scores and its part of the loss's linear term, [[(e_ref - y) . u_h]] (disguise.py), so no
        per-row ciphertext of a host reaches the guest. The loss is sum lse - (y - e_ref) . z over the rows
        (for the sigmoid, e_ref = 0 and lse = softplus); the arbiter's reply gives the lse sum."""
        rows, parties = len(order["rows"]), len(self.hosts) + 1
        disguise = Disguise.draw(rows, self._columns)
        order = {**order, "disguise": disguise.picked}
        if int(order["rows"][0]) not in self._labelled:  # batches and held-out rows never share a row
            self._labelled.add(int(order["rows"][0]))
            order["labels"] = cipher.encrypt(self.public_key, target)
        self.channel.broadcast(self.hosts, tags.CONTROL, order)
        check_partial_scores(z_guest, self.channel.party)
        parts, hosts_linear = [disguise.pack(self.public_key, z_guest, parties)], []
        packed = disguise.packed_size(self.public_key, parties)
        for host in self.hosts:
            check = Inspect(host, tags.PARTIAL)
            msg = check.mapping(self.channel.recv(host, tags.PARTIAL), {"disguised", "loss"})
            parts.append(check.cipher(msg["disguised"], self.public_key, size=packed, what="disguised scores"))
            hosts_linear.append(check.cipher(msg["loss"], self.public_key, size=1, what="loss term"))
        request = _total(parts)
        if self.config.softmax:
            probabilities, lse, reference = softmax_via_arbiter(self.channel, self.arbiter, self.public_key, disguise,
                                                                request)
            linear = reference.ravel() - target
        else:
            probabilities, lse = sigmoid_via_arbiter(self.channel, self.arbiter, self.public_key, disguise, request)
            linear = -target
        # the arbiter's fresh ciphertexts, which no host has seen: sent on without re-randomising
        residual = cipher.sendable_as_is(probabilities - target)
        return residual, _Loss(0.0, lse + linear @ z_guest, linear, 0.0, hosts_linear=_total(hosts_linear))

    def _model_columns(self, model: int) -> slice:
        return slice(model * self._columns, (model + 1) * self._columns)

    # --------------------------------------------------------------- prediction
    def decision_function(self, channel: Channel, X: np.ndarray, *, hosts: list[str],
                          rows: np.ndarray | None = None) -> np.ndarray:
        """Joint scores for ``rows`` of the aligned table (all rows by default): every host scores the
        same positions of its own aligned table and sends its partial scores."""
        self.channel, self.hosts = channel, list(hosts)
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        scores = self._scores(rows, self._design(np.asarray(X)[rows]))
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, channel: Channel, X: np.ndarray, *, hosts: list[str],
                      rows: np.ndarray | None = None) -> np.ndarray:
        z = self.decision_function(channel, X, hosts=hosts, rows=rows)
        if self.config.task == "regression":
            return z
        if self.config.softmax:
            return softmax(z, axis=1)
        p = expit(z)
        return p / p.sum(axis=1, keepdims=True) if p.ndim == 2 else p

    def predict(self, channel: Channel, X: np.ndarray, *, hosts: list[str],
                rows: np.ndarray | None = None) -> np.ndarray:
        p = self.predict_proba(channel, X, hosts=hosts, rows=rows)
        if self.config.task == "regression":
            return p
        if p.ndim == 2:
            return self.classes_[np.argmax(p, axis=1)]
        return self.classes_[(p >= 0.5).astype(int)]

    def finish(self, channel: Channel, *, hosts: list[str]) -> None:
        """Release the hosts from serving scores."""
        channel.broadcast(hosts, tags.CONTROL, {"op": "finish"})

    def _scores(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        n_models = self.coef_.shape[1]
        self.channel.broadcast(self.hosts, tags.CONTROL, {"op": "score", "rows": rows})
        total = x @ self.coef_
        for host in self.hosts:
            scores = self.channel.recv(host, tags.SCORES)
            total = total + Inspect(host, tags.SCORES).array(scores, (len(rows), n_models), what="partial scores")
        return total

    # ------------------------------------------------------------------ helpers
    def _design(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.config.fit_intercept:
            X = np.hstack([X, np.ones((len(X), 1))])
        return np.ascontiguousarray(X)

    def _targets(self, y: np.ndarray) -> list[np.ndarray]:
        """One target (rows x columns) per model: the label itself, 0/1 for binary, one-vs-rest 0/1 columns
        or one one-hot softmax target for multiclass."""
        if self.config.task == "regression":
            return [y[:, None]]
        self.classes_ = np.unique(y)
        if self.config.task == "binary":
            if len(self.classes_) != 2:
                raise DataError(f"binary task needs exactly 2 label values, the guest has {self.classes_.tolist()}")
            return [(y == self.classes_[1]).astype(np.float64)[:, None]]
        if len(self.classes_) < 3:
            raise DataError(f"multiclass task needs 3 or more label values, the guest has {self.classes_.tolist()}")
        one_hot = (y[:, None] == self.classes_[None, :]).astype(np.float64)
        return [one_hot] if self.config.softmax else list(one_hot.T[:, :, None])


@dataclass(frozen=True)
class _Loss:
    """A batch's loss, n rows: constant n + plain + linear . [[sum_h u_h]] + quadratic [[|sum_h u_h|^2]]; for the
    exact residual the hosts form their linear parts themselves (``hosts_linear``, summed; no ``hosts_sum``)."""

    constant: float
    plain: float
    linear: np.ndarray
    quadratic: float
    hosts_sum: Any = None
    hosts_linear: Any = None


def _total(values: list):
    """Sum of a non-empty list of encrypted arrays."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total
