"""homo_secureboost under the algorithm contract: clients with the same columns, one aggregator growing trees.

Clients agree on bins and send only securely aggregated histograms; the aggregator grows the trees and
every client keeps the whole model and scores its own rows with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from isthmus.algorithms.base import Algorithm, LocalPart, Party, Reference, Roster, Task
from isthmus.algorithms.homo_secureboost.aggregator import HomoSecureBoostAggregator
from isthmus.algorithms.homo_secureboost.client import HomoSecureBoostClient
from isthmus.algorithms.homo_secureboost.model import HomoTreeModel
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError
from isthmus.horizontal.keyring import keyring_from_folder
from isthmus.horizontal.secure_sum import SecAggConfig, SecAggTerms
from isthmus.tree.params import BoostOptions
from isthmus.tree.reference import booster_reference


class HomoBoostOptions(BoostOptions):
    objective: Literal["binary", "regression"] = "binary"
    min_clients: int = Field(2, ge=2)  # a secure sum over one client is that client's data
    dropout_tolerance: float = Field(0.3, ge=0, lt=1)
    round_timeout: float = Field(300.0, gt=0)

    @property
    def secagg(self) -> SecAggConfig:
        return SecAggConfig(dropout_tolerance=float(self.dropout_tolerance))


@dataclass
class TreeLocalPart(LocalPart):
    role: str
    model: HomoTreeModel
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.model.objective.name

    @property
    def feature_names(self) -> list[str]:
        return self.model.feature_names

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.scores(X)

    def to_dict(self) -> dict[str, Any]:
        return {"model": HomoSecureBoost.name, "role": self.role, "task": self.task, **self.model.to_dict(),
                **self.facts}


class HomoSecureBoost(Algorithm):
    name = "homo_secureboost"
    family = "horizontal"
    roles = {"client": (2, None), "aggregator": (0, 1), "arbiter": (0, 1)}
    Options = HomoBoostOptions
    accepts_missing = True

    def check(self, roster: Roster, options: HomoBoostOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        roster.aggregator  # exactly one aggregator (or arbiter)
        if len(roster.with_role("client")) < options.min_clients:
            raise ConfigError(f"min_clients is {options.min_clients} but the job has "
                              f"{len(roster.with_role('client'))} clients")

    def fit(self, party: Party, options: HomoBoostOptions) -> TreeLocalPart:
        clients, aggregator = party.roster.with_role("client"), party.roster.aggregator
        keyring = keyring_from_folder(party.keys_dir, party.name, clients)
        params = options.params()
        if party.name == aggregator:
            trained = HomoSecureBoostAggregator(params, bins=options.bins, secagg=options.secagg,
                                                min_clients=options.min_clients, round_timeout=options.round_timeout,
                                                keyring=keyring, job=party.channel.job)
            model = trained.fit(party.channel, clients, progress=lambda record: party.progress(**record))
            return TreeLocalPart(party.role, model, {"clients": trained.history_})
        table = party.labelled_rows()
        party.progress(status="serving", aggregator=aggregator, rows=table.n_rows)
        terms = SecAggTerms(keyring, options.secagg, options.secagg.quorum(len(clients), options.min_clients),
                            party.channel.job)
        client = HomoSecureBoostClient(table.features, table.label, terms=terms, feature_names=table.feature_names)
        return TreeLocalPart(party.role, client.serve(party.channel, aggregator))

    def load(self, role: str, model: dict[str, Any]) -> TreeLocalPart:
        return TreeLocalPart(role, HomoTreeModel.from_dict(model))

    def reference(self, options: HomoBoostOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        return Reference(*booster_reference(options, task, X_train, y_train, X_eval))


register(HomoSecureBoost())
