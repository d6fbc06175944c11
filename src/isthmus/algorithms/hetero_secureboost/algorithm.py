"""hetero_secureboost under the algorithm contract: the guest grows the trees, hosts split their own columns.

The guest's part holds the tree structures, leaf values, its own split rules and the feature
importance of every party (hosts in total); each host's part its thresholds keyed by split id.
Scoring is joint: the guest names the rows, the hosts route them at their own splits until told to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from isthmus.algorithms.base import (Algorithm, GuestPart, HostPart, KeyBits, Party, RecordPart, Reference, Roster,
                                     Task, classifier_task)
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError
from isthmus.protocols.commands import serve_orders, stop
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.tree.booster import holdout_rows, to_prediction, to_proba
from isthmus.tree.params import SAFE_NODE_ROWS, BoostOptions
from isthmus.tree.reference import booster_reference


class HeteroBoostOptions(BoostOptions):
    key_bits: KeyBits = 2048
    encryption: Literal["paillier", "plaintext"] = "paillier"  # plaintext: benchmarks only
    #: Nodes of fewer rows get no histograms (the guest could read host bins off them; tree/params.py).
    min_node_rows: int = Field(SAFE_NODE_ROWS, ge=1)
    early_stopping_rounds: int | None = Field(None, ge=1)
    validation_fraction: float = Field(0.0, ge=0, le=0.5)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.early_stopping_rounds is not None and not self.validation_fraction:
            raise ValueError("early_stopping_rounds needs a validation_fraction > 0")
        return self


@dataclass
class BoostGuestPart(GuestPart):
    trained: HeteroSecureBoostGuest
    task: Task
    classes: np.ndarray | None
    hosts: list[str]
    evaluation_rows: np.ndarray

    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        for host in self.hosts:
            channel.send(host, tags.SERVE, {"op": "predict", "rows": np.asarray(rows, dtype=np.int64)})
        raw = self.trained.decision_function(channel, np.asarray(X)[rows])
        objective = self.trained.ensemble_.objective
        if self.task == "regression":
            return to_prediction(objective, raw)
        proba = to_proba(objective, raw)
        return proba[:, 1] if self.task == "binary" else proba

    def finish(self, channel: Channel) -> None:
        channel.broadcast(self.hosts, tags.SERVE, {"op": "finish"})

    def to_dict(self) -> dict[str, Any]:
        return {"model": HeteroSecureBoost.name, "role": "guest", "task": self.task, "classes": self.classes,
                **self.trained.to_dict()}


@dataclass
class BoostHostPart(HostPart):
    trained: HeteroSecureBoostHost
    guest: str

    def serve(self, channel: Channel, X: np.ndarray) -> None:
        """Route the rows the guest names at this host's splits, request after request, until it finishes."""
        def predict(order: dict, check: Inspect) -> None:
            order = check.mapping(order, {"op", "rows"}, exact=True)
            rows = check.indices(order["rows"], len(X), what="rows to score")
            self.trained.serve_predict(channel, np.asarray(X)[rows], guest=self.guest)

        serve_orders(channel, self.guest, tags.SERVE, {"predict": predict, "finish": stop})

    def to_dict(self) -> dict[str, Any]:
        return {"model": HeteroSecureBoost.name, "role": "host", "guest": self.guest, **self.trained.to_dict()}


class HeteroSecureBoost(Algorithm):
    name = "hetero_secureboost"
    family = "vertical"
    roles = {"guest": (1, 1), "host": (1, None), "arbiter": (0, 1)}  # an arbiter may be listed; it idles
    idle_roles = frozenset({"arbiter"})
    Options = HeteroBoostOptions
    accepts_missing = True

    def check(self, roster: Roster, options: HeteroBoostOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        if allow_plaintext:
            return
        if options.encryption == "plaintext":
            raise ConfigError("encryption 'plaintext' shows every host the guest's gradients, hence its labels: it is "
                              "for benchmarks only and needs the job option benchmark_only_plaintext: true")
        if options.min_node_rows < SAFE_NODE_ROWS:
            raise ConfigError(f"min_node_rows {options.min_node_rows} (below {SAFE_NODE_ROWS}) lets the guest read host "
                              "bins off the histograms of small nodes: it is for benchmarks only and needs the job "
                              "option benchmark_only_plaintext: true")

    def fit(self, party: Party, options: HeteroBoostOptions) -> GuestPart | HostPart | RecordPart:
        if party.role == "arbiter":
            return RecordPart("arbiter", {"model": self.name, "note": "SecureBoost needs no arbiter"})
        guest, hosts = party.roster.one("guest"), party.roster.with_role("host")
        if party.role == "host":
            table = party.rows()
            trained = HeteroSecureBoostHost(options.bins, encryption=options.encryption,
                                            min_node_rows=options.min_node_rows)
            trained.fit(party.channel, table.features, guest=guest, feature_names=table.feature_names)
            return BoostHostPart(trained, guest)
        table = party.labelled_rows()
        objective = classifier_task(options.objective, table.label, self.name)
        classes = np.unique(table.label) if objective != "regression" else None
        y = table.label if classes is None else np.searchsorted(classes, table.label)  # any two labels: 0 and 1
        params = options.params(objective=objective, n_classes=len(classes) if objective == "multiclass" else None)
        trained = HeteroSecureBoostGuest(params.n_trees, params.max_depth, params.learning_rate, options.bins,
                                         encryption=options.encryption, key_bits=options.key_bits,
                                         min_node_rows=options.min_node_rows,
                                         **{k: v for k, v in params.to_dict().items()
                                            if k not in ("n_trees", "max_depth", "learning_rate")})
        party.progress(model=self.name, hosts=len(hosts), rows=table.n_rows)
        trained.fit(party.channel, table.features, y, hosts=hosts, feature_names=table.feature_names)
        ensemble = trained.ensemble_
        party.progress(trees=len(ensemble.trees),
                       **({"validation_loss": round(ensemble.validation_loss[-1], 6)} if ensemble.validation_loss else {}))
        evaluation = holdout_rows(params, table.n_rows) if params.validation_fraction else np.arange(table.n_rows)
        return BoostGuestPart(trained, objective, classes, hosts, evaluation)

    def load(self, role: str, model: dict[str, Any]) -> GuestPart | HostPart:
        if role == "guest":
            classes = None if model.get("classes") is None else np.asarray(model["classes"])
            return BoostGuestPart(HeteroSecureBoostGuest.from_dict(model), model["task"], classes,
                                  list(model["hosts"]), np.arange(0))
        if role == "host":
            return BoostHostPart(HeteroSecureBoostHost.from_dict(model), model["guest"])
        raise ConfigError(f"{self.name} keeps no model at role {role!r}")

    def reference(self, options: HeteroBoostOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        return Reference(*booster_reference(options, task, X_train, y_train, X_eval))


register(HeteroSecureBoost())
