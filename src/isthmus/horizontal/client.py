"""What a model must do to take part in horizontal training: the client abstraction (after Flower's).

A client holds its own rows and never shows them: it hands out its parameters, trains from given
parameters, and evaluates given parameters. Everything else (secure aggregation, transport, dropout
handling) is done around it, so any model, numpy or PyTorch, plugs in by implementing three methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from isthmus.data.table import PartyTable

Parameters = list[np.ndarray]
Config = dict[str, Any]


class FitRes(NamedTuple):
    parameters: Parameters
    num_examples: int
    metrics: dict[str, float]


class EvaluateRes(NamedTuple):
    loss: float
    num_examples: int
    metrics: dict[str, float]


class Client(ABC):
    """One party's model and data.

    ``config`` carries the round number (``"round"``) and what the strategy asks for, such as
    ``"proximal_mu"`` (FedProx) or local ``"epochs"``; a client ignores keys it does not know.
    """

    @abstractmethod
    def get_parameters(self) -> Parameters:
        """The current parameters: a list of float arrays, always in the same order and shapes."""

    @abstractmethod
    def fit(self, parameters: Parameters, config: Config) -> FitRes:
        """Train locally starting from ``parameters``; return the new ones, the example count, metrics."""

    def evaluate(self, parameters: Parameters, config: Config) -> EvaluateRes | None:
        """Loss and metrics of ``parameters`` on local held-out data; ``None`` when the client has none."""
        return None


@dataclass(frozen=True)
class ClientContext:
    """What a ``client_fn`` is told about the client it builds, in ``simulate`` and in a job alike.

    ``index`` is the client's position (0 .. ``count`` - 1) among the clients; ``table`` its labelled
    rows: in a job, the party's own data file; in ``simulate``, the table given for it, if any.
    """

    name: str
    index: int
    count: int
    table: PartyTable | None = None


#: Builds one client from its context (Flower's ``client_fn``): the same function serves simulation and jobs.
ClientFn = Callable[[ClientContext], Client]
