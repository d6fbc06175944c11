"""Many clients on one machine: the same aggregator, strategies and secure aggregation, no transport.

Each simulated client is a :class:`~isthmus.horizontal.participant.ClientProtocol` around a
:class:`~isthmus.horizontal.client.Client` (for the numpy models: its rows and a seed), called
directly, one after another: no process, thread or codec per client, so a thousand logistic-regression
clients train in a fraction of a second per round. ``faults`` makes clients drop out at chosen stages
to exercise dropout recovery. The clients' signing keys for secure aggregation are made in memory, and
every client holds the same terms (as if from one job file) as the aggregator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from isthmus.horizontal.aggregator import Aggregator, RoundRecord, TrainingOptions, TrainingResult
from isthmus.data.table import PartyTable
from isthmus.errors import ConfigError
from isthmus.horizontal.client import Client, ClientContext, ClientFn, Parameters
from isthmus.horizontal.dp import DPConfig
from isthmus.horizontal.fleet import Failures, Fleet, Replies
from isthmus.horizontal.participant import ClientProtocol, ClientTerms
from isthmus.horizontal.secure_sum import Keyring, SecAggConfig, SecAggTerms, mask_together
from isthmus.horizontal.strategy import Strategy

#: ``faults(round, stage, client)`` -> True when ``client`` should vanish at ``stage`` of ``round``.
Faults = Callable[[int, str, str], bool]

AGGREGATOR = "aggregator"


def in_memory_terms(
    names: list[str],
    committee: int,
    *,
    secure: bool = True,
    secagg: SecAggConfig | None = None,
    dp: DPConfig | None = None,
    min_clients: int = 2,
    job: str = "isthmus",
) -> tuple[dict[str, ClientTerms], Keyring | None]:
    """Every client's terms, as if all read one job file, with signing keys made in memory; and the
    aggregator's keyring (the pinned keys). ``committee``: how many clients a round asks."""
    if not secure:
        return {name: ClientTerms(secure=False, dp=dp) for name in names}, None
    secagg = secagg or SecAggConfig()
    keyrings = Keyring.generate(names)
    quorum = secagg.quorum(committee, min_clients)
    terms = {name: ClientTerms(True, SecAggTerms(keyrings[name], secagg, quorum, job), dp) for name in names}
    return terms, keyrings[names[0]].public()


class SimulatedFleet(Fleet):
    def __init__(self, clients: Mapping[str, Client], terms: Mapping[str, ClientTerms], faults: Faults | None = None):
        self.protocols = {
            name: ClientProtocol(name, client, terms[name], AGGREGATOR) for name, client in clients.items()
        }
        self.faults = faults

    def request(
        self, op: str, server_round: int, messages: Mapping[str, dict], timeout: float
    ) -> tuple[Replies, Failures]:
        replies: Replies = {}
        failures: Failures = {}
        prepared = {}
        for name, message in messages.items():
            if self.faults and self.faults(server_round, op, name):
                failures[name] = f"dropped out at {op} (simulated)"
                continue
            request = {"op": op, "round": server_round, **message}
            try:
                if op == "masked_input":  # masked together below, each pair's mask expanded once
                    secagg, encoded = self.protocols[name].prepare_masking(request)
                    prepared[name] = (secagg, request, encoded)
                else:
                    replies[name] = self.protocols[name].handle(request)
            except Exception as exc:  # noqa: BLE001 - as over a channel, any client failure leaves it out of the round
                failures[name] = f"client reported: {type(exc).__name__}: {exc}"
        if prepared:
            masked, failed = mask_together(prepared)
            replies.update(masked)
            failures.update({name: f"client reported: {why}" for name, why in failed.items()})
        return replies, failures

    def notify(self, clients: Iterable[str], message: dict) -> None:
        for name in clients:
            self.protocols[name].handle(message)


def simulate(
    clients: Mapping[str, Client] | Sequence[Client] | ClientFn,
    strategy: Strategy,
    rounds: int,
    *,
    secure: bool = True,
    secagg: SecAggConfig | None = None,
    dp: DPConfig | None = None,
    initial_parameters: Parameters | None = None,
    min_clients: int = 2,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[RoundRecord], None] | None = None,
    faults: Faults | None = None,
    num_clients: int | None = None,
    tables: Sequence[PartyTable] | None = None,
) -> TrainingResult:
    """Train ``rounds`` rounds of ``strategy`` over in-process ``clients`` (named ``client-0001``... if a list).

    ``clients`` may instead be a ``client_fn`` (:data:`~isthmus.horizontal.client.ClientFn`), called once
    per client with its :class:`~isthmus.horizontal.client.ClientContext`: for ``num_clients`` clients,
    or one per table of ``tables`` (each client's rows, as a job would read them from its data file).
    """
    if callable(clients) and not isinstance(clients, Mapping | Sequence):
        clients = _from_client_fn(clients, num_clients, tables)
    if not isinstance(clients, Mapping):
        clients = {f"client-{i:04d}": client for i, client in enumerate(clients, start=1)}
    secagg = secagg or SecAggConfig()
    terms, keyring = in_memory_terms(list(clients), strategy.sample_size(len(clients)), secure=secure, secagg=secagg,
                                     dp=dp, min_clients=min_clients)
    options = TrainingOptions(
        secure=secure,
        secagg=secagg,
        keyring=keyring,
        dp=dp,
        min_clients=min_clients,
        round_timeout=0.0,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
    )
    fleet = SimulatedFleet(clients, terms, faults)
    return Aggregator(fleet, list(clients), strategy, options).run(rounds, initial_parameters)


def _from_client_fn(client_fn: ClientFn, num_clients: int | None, tables: Sequence[PartyTable] | None
                    ) -> dict[str, Client]:
    if (num_clients is None) == (tables is None):
        raise ConfigError("simulate(client_fn, ...) needs either num_clients= or tables= (one table a client)")
    count = len(tables) if tables is not None else num_clients
    names = [f"client-{i:04d}" for i in range(1, count + 1)]
    return {name: client_fn(ClientContext(name, i, count, tables[i] if tables is not None else None))
            for i, name in enumerate(names)}
