"""hetero_lr and hetero_linr under the algorithm contract: each role's side, its part, the reference.

Every party standardises its own columns over the aligned rows (``scale``); the guest keeps its
weights and the intercept, each host its own weights, and the arbiter only the fact that it served.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from isthmus.algorithms.base import (Algorithm, GuestPart, HostPart, Party, RecordPart, Reference, Roster, Task,
                                     classifier_task)
from isthmus.algorithms.hetero_linear.arbiter import HeteroLinearArbiter
from isthmus.algorithms.hetero_linear.batches import safe_rows_per_feature
from isthmus.algorithms.hetero_linear.guest import HeteroLinearGuest
from isthmus.algorithms.hetero_linear.host import HeteroLinearHost
from isthmus.algorithms.hetero_linear.options import LinearOptions
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError
from isthmus.ml.scaling import Standardizer
from isthmus.transport.channel import Channel


class LogisticOptions(LinearOptions):
    task: Literal["binary", "multiclass"] = "binary"  # binary turns multiclass when the labels have 3+ values


class RegressionOptions(LinearOptions):
    task: Literal["regression"] = "regression"


@dataclass
class LinearGuestPart(GuestPart):
    model_name: str
    trained: HeteroLinearGuest
    features: list[str]
    scaler: Standardizer | None
    hosts: list[str]
    evaluation_rows: np.ndarray

    @property
    def task(self) -> Task:
        return self.trained.config.task

    @property
    def classes(self) -> np.ndarray | None:
        return self.trained.classes_

    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.trained.predict_proba(channel, scaled(self.scaler, X), hosts=self.hosts, rows=rows)

    def finish(self, channel: Channel) -> None:
        self.trained.finish(channel, hosts=self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "role": "guest", "features": self.features,
                "scaler": self.scaler.to_dict() if self.scaler else None, "task": self.task,
                "coef": self.trained.coef_, "classes": self.classes, "history": self.trained.history_,
                "intercept_included": self.trained.config.fit_intercept, "hosts": self.hosts,
                "options": self.trained.config.to_dict()}


@dataclass
class LinearHostPart(HostPart):
    model_name: str
    trained: HeteroLinearHost
    features: list[str]
    scaler: Standardizer | None
    guest: str

    def serve(self, channel: Channel, X: np.ndarray) -> None:
        self.trained.serve_scores(channel, scaled(self.scaler, X), guest=self.guest)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "role": "host", "features": self.features,
                "scaler": self.scaler.to_dict() if self.scaler else None, "coef": self.trained.coef_,
                "guest": self.guest, "options": self.trained.config.to_dict()}


class _HeteroLinear(Algorithm):
    """The white paper's protocol: hosts send encrypted partial predictions, the arbiter decrypts masked gradients."""

    family = "vertical"
    roles = {"guest": (1, 1), "host": (1, None), "arbiter": (1, 1)}
    contribution = "coalitions"

    def check(self, roster: Roster, options: LinearOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        if options.encrypt and options.cipher == "ckks" and importlib.util.find_spec("tenseal") is None:
            raise ConfigError(f"{self.name} with cipher: ckks needs TenSEAL on every party: pip install 'isthmus[lattice]'")
        if allow_plaintext:
            return
        if not options.encrypt:
            raise ConfigError(f"{self.name} with encrypt: false shows the arbiter every gradient and the hosts the "
                              "guest's residuals, hence its labels: it exists for benchmarks only and needs the job "
                              "option benchmark_only_plaintext: true")
        if options.unsafe_batches:
            raise ConfigError(f"{self.name} with batch_rows_per_feature {options.rows_per_feature} (below the safe "
                              f"{safe_rows_per_feature(options.precision)} at precision {options.precision}) allows "
                              "batches small enough for a host to solve its gradient for the guest's labels: it is "
                              "for benchmarks only and needs the job option benchmark_only_plaintext: true")

    def check_contribution(self, options: LinearOptions) -> None:
        if not options.fit_intercept:
            raise ConfigError("contribution needs fit_intercept: true (a coalition without the guest's features "
                              "still has the guest's intercept)")

    def fit(self, party: Party, options: LinearOptions) -> GuestPart | HostPart | RecordPart:
        roster, channel = party.roster, party.channel
        guest, hosts, arbiter = roster.one("guest"), roster.with_role("host"), roster.one("arbiter")
        if party.role == "arbiter":
            served = HeteroLinearArbiter(options).fit(channel, guest=guest, hosts=hosts)
            return RecordPart("arbiter", {"model": self.name, "rounds_decrypted": served.rounds_served})
        table = party.labelled_rows() if party.role == "guest" else party.rows()
        scaler = Standardizer.fit(table.features) if options.scale and table.feature_names else None
        X = scaled(scaler, table.features)
        if party.role == "host":
            trained = HeteroLinearHost(options).fit(channel, X, guest=guest, arbiter=arbiter)
            return LinearHostPart(self.name, trained, table.feature_names, scaler, guest)
        options = options.model_copy(update={"task": classifier_task(options.task, table.label, self.name)})
        trained = HeteroLinearGuest(options).fit(channel, X, table.label, hosts=hosts, arbiter=arbiter,
                                                 progress=lambda record: party.progress(**record))
        held_out = trained.validation_rows_
        return LinearGuestPart(self.name, trained, table.feature_names, scaler, hosts,
                               held_out if len(held_out) else np.arange(table.n_rows))

    def load(self, role: str, model: dict[str, Any]) -> GuestPart | HostPart:
        return load_part(self.name, self.Options, role, model)

    def local_options(self, options: LinearOptions) -> LinearOptions:
        return options.model_copy(update={"encrypt": False})

    def coalition_options(self, options: LinearOptions, part: LinearGuestPart) -> LinearOptions:
        """The job's run's batches: a coalition without the widest party has a lower floor, and batches cut
        at other rows would give a host gradients over new sets of rows, hence the labels of their
        differences. The same seed, rows and batch size draw the very same batches (guest.py)."""
        return options.model_copy(update={"batch_size": part.trained.history_[0]["batch_rows"]})


class HeteroLR(_HeteroLinear):
    name = "hetero_lr"
    Options = LogisticOptions

    def reference(self, options: LogisticOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        return logistic_reference(options, task, X_train, y_train, X_eval)


class HeteroLinR(_HeteroLinear):
    name = "hetero_linr"
    Options = RegressionOptions

    def reference(self, options: RegressionOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        from sklearn.linear_model import LinearRegression, Ridge

        X_train, X_eval = _pooled_scaling(options, X_train, X_eval)
        alpha = options.alpha if options.penalty == "l2" else 0.0
        model = Ridge(alpha=alpha * len(y_train), fit_intercept=options.fit_intercept) if alpha \
            else LinearRegression(fit_intercept=options.fit_intercept)
        return Reference(model.fit(X_train, y_train).predict(X_eval), "scikit-learn")


def load_part(name: str, options_type: type, role: str, model: dict[str, Any]) -> GuestPart | HostPart:
    """A linear guest or host part from its model.json (hetero_lr, hetero_linr and hetero_lr_sshe parts alike)."""
    options = options_type(**model["options"])
    scaler = Standardizer.from_dict(model["scaler"]) if model.get("scaler") else None
    coef = np.asarray(model["coef"], dtype=np.float64)
    if role == "guest":
        trained = HeteroLinearGuest(options)
        trained.coef_, trained.history_ = coef, model.get("history", [])
        trained.classes_ = None if model.get("classes") is None else np.asarray(model["classes"])
        return LinearGuestPart(name, trained, model["features"], scaler, model["hosts"], np.arange(0))
    if role == "host":
        trained = HeteroLinearHost(options)
        trained.coef_ = coef
        return LinearHostPart(name, trained, model["features"], scaler, model["guest"])
    raise ConfigError(f"{name} keeps no model at role {role!r}")


def logistic_reference(options, task: Task, X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray) -> Reference:
    """scikit-learn's default LogisticRegression (multinomial for multiclass: the model ``residual: sigmoid``
    trains; one-vs-rest with the Taylor residual is measured against it too) with the same penalty:
    isthmus minimises mean loss + alpha/2 |W|^2, scikit-learn C * sum loss + |W|^2 / 2."""
    from sklearn.linear_model import LogisticRegression

    X_train, X_eval = _pooled_scaling(options, X_train, X_eval)
    alpha = options.alpha if options.penalty == "l2" else 0.0
    logistic = LogisticRegression(C=1.0 / (alpha * len(y_train)) if alpha else 1e12,
                                  fit_intercept=options.fit_intercept, max_iter=5000)
    probabilities = logistic.fit(X_train, y_train).predict_proba(X_eval)
    return Reference(probabilities if task == "multiclass" else probabilities[:, 1], "scikit-learn")


def scaled(scaler: Standardizer | None, X: np.ndarray) -> np.ndarray:
    return scaler.transform(X) if scaler else np.asarray(X, dtype=np.float64)


def _pooled_scaling(options, X_train: np.ndarray, X_eval: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise as the parties do: each column over all aligned rows (training and evaluation)."""
    if not options.scale:
        return X_train, X_eval
    scaler = Standardizer.fit(np.vstack([X_train, X_eval]))
    return scaler.transform(X_train), scaler.transform(X_eval)


register(HeteroLR())
register(HeteroLinR())
