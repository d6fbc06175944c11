"""homo_nn under the algorithm contract: a PyTorch network trained horizontally, as homo_lr is.

The rounds, strategies (FedAvg, FedProx, FedAdam, FedYogi), secure aggregation, differential privacy,
dropouts and checkpoints are the horizontal engine's; this package adds the network (built alike at
every party from the job's layer list or an installed factory), the check that every client built
the same parameter shapes, and a part that scores rows with the final network. PyTorch is imported
only when a homo_nn job trains or loads, so the rest of isthmus runs without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from isthmus.algorithms.base import Algorithm, LocalPart, Party, Reference, Roster, Task
from isthmus.algorithms.homo_nn.options import NNOptions
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError
from isthmus.horizontal.updates import RoundUpdates

PREDICT_BATCH = 4096


@dataclass
class NNLocalPart(LocalPart):
    role: str
    options: NNOptions
    input_shape: tuple[int, ...]
    parameters: list[np.ndarray]
    feature_names: list[str]
    facts: dict[str, Any] = field(default_factory=dict)  # what the role adds to model.json (history, epsilon)
    #: At the aggregator, with ``keep_round_updates``: each round's start model and the clients' updates.
    rounds: list[RoundUpdates] = field(default_factory=list)
    _module: Any = field(default=None, repr=False)

    @property
    def task(self) -> Task:
        return self.options.task

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with(self.parameters, X)

    def predict_with(self, parameters: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Scores of the network with other parameters (contribution values each coalition's model)."""
        from isthmus.algorithms.homo_nn import data, network

        if self._module is None:
            self._module = network.build(self.options, self.input_shape)
        module = network.with_parameters(self._module, parameters)
        chunks = [network.scores(module, self.task, data.inputs(X[start:start + PREDICT_BATCH], self.input_shape))
                  for start in range(0, len(X), PREDICT_BATCH)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.options.outputs) if self.task == "multiclass"
                                                                else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"model": "homo_nn", "role": self.role, "task": self.task, "features": self.feature_names,
                "input_shape": list(self.input_shape), "options": self.options.to_dict(),
                "parameters": [{"shape": list(p.shape), "values": p.ravel()} for p in self.parameters],
                **self.facts}


class HomoNN(Algorithm):
    name = "homo_nn"
    family = "horizontal"
    imports = ("torch",)
    roles = {"client": (2, None), "aggregator": (0, 1), "arbiter": (0, 1)}
    contribution = "rounds"
    Options = NNOptions

    def check(self, roster: Roster, options: NNOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        roster.aggregator  # exactly one aggregator (or arbiter)
        options.check_roster(roster.with_role("client"))

    def fit(self, party: Party, options: NNOptions) -> NNLocalPart:
        from isthmus.algorithms.homo_nn.aggregator import train_aggregator
        from isthmus.algorithms.homo_nn.client import train_client

        if party.name != party.roster.aggregator:
            shape, parameters, fitted = train_client(party, options)
            return NNLocalPart(party.role, options, shape, parameters, party.rows().feature_names,
                               {"rounds_fitted": fitted})
        shape, features, result, rounds = train_aggregator(party, options)
        facts = {"strategy": options.strategy, "secure_aggregation": options.secure_aggregation,
                 "epsilon": result.epsilon, "history": [asdict(record) for record in result.history]}
        return NNLocalPart(party.role, options, shape, result.parameters, features, facts, rounds)

    def load(self, role: str, model: dict[str, Any]) -> NNLocalPart:
        from isthmus.algorithms.homo_nn import network

        options = NNOptions.parse(model["options"], where="model.json of homo_nn")
        shape = tuple(model["input_shape"])
        built = network.describe_shapes(network.initial_parameters(network.build(options, shape)))
        saved = [list(p["shape"]) for p in model["parameters"]]
        if saved != built:
            raise ConfigError(f"model.json holds parameter shapes {saved} but its network builds {built}")
        parameters = [np.asarray(p["values"], dtype=np.float32).reshape(p["shape"]) for p in model["parameters"]]
        return NNLocalPart(role, options, shape, parameters, model["features"])

    def reference(self, options: NNOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        """The same network and optimiser over the pooled rows for ``rounds * local_epochs`` epochs."""
        from isthmus.algorithms.homo_nn import data, network
        from isthmus.horizontal.torch_model import TorchClient

        shape = network.input_shape(options.network, X_train.shape[1], "parity")
        module = network.build(options, shape)
        client = TorchClient(module, network.loss_function(options.task), network.optimizer_factory(options),
                             train=data.dataset(X_train, y_train, shape, options.task), batch_size=options.batch_size,
                             device=network.device(options), seed=options.seed)
        trained = client.fit(client.get_parameters(), {"epochs": options.rounds * options.local_epochs}).parameters
        part = NNLocalPart("reference", options, shape, trained, [])
        return Reference(part.predict(X_eval), "the same network trained centrally")


register(HomoNN())
