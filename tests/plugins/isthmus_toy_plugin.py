"""A model that lives outside isthmus, to prove the algorithm contract: registered through
``ISTHMUS_PLUGINS``, run by real party processes, evaluated and compared by ``isthmus parity``
without any isthmus module naming it.

It is deliberately insecure (each host sends its raw columns to the guest), so the contract's
``check`` must refuse it unless the job says ``benchmark_only_plaintext: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from isthmus.algorithms.base import Algorithm, GuestPart, HostPart, Party, Reference, Roster, Seed, Task
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError
from isthmus.options import Options
from isthmus.protocols.commands import STOP, serve_orders
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

COLUMNS, ORDERS = "toy/columns", "toy/orders"


class ToyOptions(Options):
    holdout: float = 0.25
    seed: Seed = 0


def _model(coef: list[float], intercept: float) -> LogisticRegression:
    model = LogisticRegression()
    model.coef_, model.intercept_, model.classes_ = np.array([coef]), np.array([intercept]), np.array([0, 1])
    return model


@dataclass
class ToyGuestPart(GuestPart):
    coef: list[float]
    intercept: float
    hosts: list[str]
    evaluation_rows: np.ndarray
    task: Task = "binary"
    classes: np.ndarray | None = None

    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        columns = [X[rows]]
        for host in self.hosts:
            channel.send(host, ORDERS, {"op": "rows", "rows": rows})
            columns.append(Inspect(host, COLUMNS).array(channel.recv(host, COLUMNS), shape=(len(rows), None)))
        return _model(self.coef, self.intercept).predict_proba(np.hstack(columns))[:, 1]

    def finish(self, channel: Channel) -> None:
        for host in self.hosts:
            channel.send(host, ORDERS, {"op": "finish"})

    def to_dict(self) -> dict[str, Any]:
        return {"model": "toy_pooled_lr", "role": "guest", "task": self.task, "coef": self.coef,
                "intercept": self.intercept, "hosts": self.hosts}


@dataclass
class ToyHostPart(HostPart):
    guest: str

    def serve(self, channel: Channel, X: np.ndarray) -> None:
        def rows(order: dict, check: Inspect) -> None:
            wanted = check.indices(order["rows"], len(X))
            channel.send(self.guest, COLUMNS, X[wanted])

        serve_orders(channel, self.guest, ORDERS, {"rows": rows, "finish": lambda order, check: STOP})

    def to_dict(self) -> dict[str, Any]:
        return {"model": "toy_pooled_lr", "role": "host", "guest": self.guest}


class ToyPooledLR(Algorithm):
    name = "toy_pooled_lr"
    family = "vertical"
    roles = {"guest": (1, 1), "host": (1, None)}
    Options = ToyOptions

    def check(self, roster: Roster, options: ToyOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        if not allow_plaintext:
            raise ConfigError("toy_pooled_lr sends every host's raw columns to the guest: benchmark_only_plaintext only")

    def fit(self, party: Party, options: ToyOptions) -> GuestPart | HostPart:
        guest, hosts = party.roster.one("guest"), party.roster.with_role("host")
        if party.role == "host":
            party.channel.send(guest, COLUMNS, party.rows().features)
            return ToyHostPart(guest)
        table = party.labelled_rows()
        columns = [table.features] + [Inspect(host, COLUMNS).array(party.channel.recv(host, COLUMNS),
                                                                     shape=(table.n_rows, None)) for host in hosts]
        X, y = np.hstack(columns), table.label
        held_out = np.random.default_rng(options.seed).random(table.n_rows) < options.holdout
        model = LogisticRegression(max_iter=5000).fit(X[~held_out], y[~held_out])
        return ToyGuestPart(model.coef_[0].tolist(), float(model.intercept_[0]), hosts, np.flatnonzero(held_out))

    def load(self, role: str, model: dict[str, Any]) -> GuestPart | HostPart:
        if role == "host":
            return ToyHostPart(model["guest"])
        return ToyGuestPart(model["coef"], model["intercept"], model["hosts"], np.arange(0))

    def reference(self, options: ToyOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        scores = LogisticRegression(max_iter=5000).fit(X_train, y_train).predict_proba(X_eval)[:, 1]
        return Reference(scores, "scikit-learn on pooled columns")


register(ToyPooledLR())
