"""Hetero and horizontal SecureBoost as job steps: each party trains its side and keeps its own part.

Hetero (`hetero_secureboost`): the guest (labels) and the hosts grow the trees together; the guest's
`model.json` holds the tree structures, leaf values, its own split rules and the feature importance of
every party (hosts in total), each host's `model.json` its thresholds keyed by split id. Evaluation is
joint: the guest names the rows to score, the hosts route them at their own splits until told to stop.

Horizontal (`homo_secureboost`): clients with the same columns agree on bins and send only securely
aggregated histograms; the aggregator grows the trees and every client keeps the whole model and
scores its own test rows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError, ProtocolError
from isthmus.horizontal.secure_sum import SecAggConfig, SecAggTerms
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import horizontal
from isthmus.jobs.steps.data import party_table
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.tree.booster import holdout_rows, to_prediction, to_proba
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost
from isthmus.algorithms.homo_secureboost.aggregator import HomoSecureBoostAggregator
from isthmus.algorithms.homo_secureboost.client import HomoSecureBoostClient
from isthmus.algorithms.homo_secureboost.model import HomoTreeModel
from isthmus.tree.params import SAFE_NODE_ROWS, BoostParams

#: The guest names the rows to score ({"op": "predict", "rows": ...}) or ends the serving ({"op": "finish"}).
SERVE_TAG = "secureboost-job/serve"
MIN_KEY_BITS = 1024

#: Job option -> BoostParams field, where the job file uses the issue's shorter name.
_RENAMED = {"trees": "n_trees"}
_PARAMS = {f.name for f in fields(BoostParams)} - {"n_trees", "n_classes"}
HETERO_OPTIONS = {"trees", "bins", "key_bits", "encryption", "min_node_rows"} | _PARAMS
HOMO_OPTIONS = {"trees", "bins", "min_clients", "dropout_tolerance", "round_timeout"} | (
    _PARAMS - {"early_stopping_rounds", "validation_fraction"})


def boost_params(options: dict, **extra: Any) -> BoostParams:
    values = {_RENAMED.get(key, key): value for key, value in options.items() if key in _PARAMS | set(_RENAMED)}
    return BoostParams(**values, **extra)


def _check_options(model: str, options: dict, known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"train: unknown options {unknown} for {model}; known: {sorted(known)}")


def int_option(options: dict, name: str, default: int, low: int, high: int | None = None) -> int:
    """An integer option in ``[low, high]``, or a ConfigError naming it."""
    value = options.get(name, default)
    if type(value) is not int or value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be an integer {bounds}, got {value!r}")
    return value


# --- hetero SecureBoost ---------------------------------------------------------------------------


def train_hetero(ctx: PartyContext, options: dict):
    """The `train` step of `hetero_secureboost` at the guest, a host, or (idle) an arbiter."""
    _check_options("hetero_secureboost", options, HETERO_OPTIONS)
    encryption = options.get("encryption", "paillier")
    if encryption == "plaintext":
        ctx.spec.require_plaintext_switch("train: encryption 'plaintext' (it shows every host the guest's "
                                          "gradients, hence its labels)")
    key_bits = int_option(options, "key_bits", 2048, MIN_KEY_BITS)
    bins = int_option(options, "bins", 32, 2, 255)
    min_node_rows = int_option(options, "min_node_rows", SAFE_NODE_ROWS, 1)
    if min_node_rows < SAFE_NODE_ROWS:
        ctx.spec.require_plaintext_switch(f"train: min_node_rows {min_node_rows} (below {SAFE_NODE_ROWS}, the "
                                          "guest could read host bins off the histograms of small nodes)")
    boost_params(options)  # a bad value fails at every party, not only at the guest
    if ctx.role == "arbiter":
        return None  # SecureBoost needs no arbiter: the guest holds the key
    if ctx.role not in ("guest", "host"):
        raise ConfigError(f"hetero_secureboost has no role {ctx.role!r}; it needs a guest and hosts")
    table = party_table(ctx)
    if ctx.role == "guest":
        return _train_guest(ctx, options, table, bins=bins, encryption=encryption, key_bits=key_bits,
                            min_node_rows=min_node_rows)
    part = HeteroSecureBoostHost(bins, encryption=encryption, min_node_rows=min_node_rows)
    guest = ctx.spec.one("guest")
    part.fit(ctx.channel, table.features, guest=guest, feature_names=table.feature_names)
    ctx.write_json("model.json", {"model": "hetero_secureboost", "role": "host", **part.to_dict()})
    return _HostServer(part, table.features, guest)


def _train_guest(ctx: PartyContext, options: dict, table: PartyTable, *, bins: int, encryption: str,
                 key_bits: int, min_node_rows: int) -> _GuestScorer:
    if table.label is None:
        raise ConfigError(f"guest {ctx.party!r} needs a 'label' column in its data to train hetero_secureboost")
    objective = options.get("objective", "binary")
    classes = np.unique(table.label) if objective != "regression" else None
    if objective == "binary" and len(classes) > 2:
        objective = "multiclass"
    y = np.searchsorted(classes, table.label) if objective == "multiclass" else table.label
    params = boost_params({**options, "objective": objective},
                          n_classes=len(classes) if objective == "multiclass" else None)
    part = HeteroSecureBoostGuest(params.n_trees, params.max_depth, params.learning_rate, bins,
                                  encryption=encryption, key_bits=key_bits, min_node_rows=min_node_rows,
                                  **{k: v for k, v in params.to_dict().items()
                                     if k not in ("n_trees", "max_depth", "learning_rate")})
    hosts = ctx.spec.with_role("host")
    ctx.events.emit(step="train", model="hetero_secureboost", hosts=len(hosts), rows=table.n_rows)
    part.fit(ctx.channel, table.features, y, hosts=hosts, feature_names=table.feature_names)
    ensemble = part.ensemble_
    ctx.write_json("model.json", {"model": "hetero_secureboost", "role": "guest", "task": objective,
                                  "classes": classes, **part.to_dict()})
    ctx.events.emit(step="train", trees=len(ensemble.trees),
                    **({"validation_loss": round(ensemble.validation_loss[-1], 6)} if ensemble.validation_loss else {}))
    evaluation = holdout_rows(params, table.n_rows) if params.validation_fraction else np.arange(table.n_rows)
    return _GuestScorer(part, table.features, hosts, objective, classes, evaluation)


@dataclass
class _GuestScorer:
    """What the `evaluate` step needs from the guest: joint scores for chosen aligned rows."""

    part: HeteroSecureBoostGuest
    X: np.ndarray
    hosts: list[str]
    task: str
    classes: np.ndarray | None  # label values of a classifier, in class-index order
    evaluation_rows: np.ndarray

    def scores(self, channel: Channel, rows: np.ndarray) -> np.ndarray:
        """P(y=1) (binary), class probabilities (multiclass) or values (regression) of ``rows``."""
        for host in self.hosts:
            channel.send(host, SERVE_TAG, {"op": "predict", "rows": np.asarray(rows, dtype=np.int64)})
        raw = self.part.decision_function(channel, self.X[rows])
        objective = self.part.ensemble_.objective
        if self.task == "regression":
            return to_prediction(objective, raw)
        proba = to_proba(objective, raw)
        return proba[:, 1] if self.task == "binary" else proba

    def finish(self, channel: Channel) -> None:
        for host in self.hosts:
            channel.send(host, SERVE_TAG, {"op": "finish"})


@dataclass
class _HostServer:
    """A host during `evaluate`: routes the rows the guest names at its own splits until the guest finishes."""

    part: HeteroSecureBoostHost
    X: np.ndarray
    guest: str

    def serve(self, channel: Channel) -> None:
        where = {"peer": self.guest, "tag": SERVE_TAG}
        while True:
            request = channel.recv(self.guest, SERVE_TAG)
            op = request.get("op") if isinstance(request, dict) else None
            if type(op) is not str or op not in ("predict", "finish"):
                raise ProtocolError("expected op 'predict' or 'finish'", **where)
            if op == "finish":
                Inspect(**where).mapping(request, {"op"}, exact=True)
                return
            request = Inspect(**where).mapping(request, {"op", "rows"}, exact=True)
            rows = Inspect(**where).indices(request["rows"], len(self.X), what="rows to score")
            self.part.serve_predict(channel, self.X[rows], guest=self.guest)


# --- horizontal SecureBoost -----------------------------------------------------------------------


def train_homo(ctx: PartyContext, options: dict) -> horizontal.LocalModel:
    """The `train` step of `homo_secureboost` at a client or the aggregator."""
    _check_options("homo_secureboost", options, HOMO_OPTIONS)
    params = boost_params(options)
    if params.objective == "multiclass":
        raise ConfigError("homo_secureboost jobs take objective binary or regression")
    aggregator = horizontal.aggregator_of(ctx.spec)
    clients = ctx.spec.with_role("client")
    strangers = sorted(set(ctx.spec.parties) - set(clients) - {aggregator})
    if strangers or len(clients) < 2:
        raise ConfigError(f"homo_secureboost needs at least two clients and one aggregator; "
                          f"clients {clients}, others {strangers}")
    secagg, min_clients, round_timeout = _homo_sums(options)
    keyring = horizontal.secagg_keyring(ctx, clients)
    if ctx.party == aggregator:
        part = HomoSecureBoostAggregator(params, bins=int_option(options, "bins", 32, 2, 255), secagg=secagg,
                                         min_clients=min_clients, round_timeout=round_timeout, keyring=keyring,
                                         job=ctx.spec.name)
        return _aggregate(ctx, part, clients)
    table = party_table(ctx)
    if table.label is None:
        raise ConfigError(f"client {ctx.party!r} needs a 'label' column in its data to train homo_secureboost")
    data = ctx.spec.party(ctx.party).data
    test = _test_rows(ctx, data.test, table.feature_names) if data.test else None  # fail before training
    ctx.events.emit(step="train", status="serving", aggregator=aggregator, rows=table.n_rows)
    terms = SecAggTerms(keyring, secagg, secagg.quorum(len(clients), min_clients), ctx.spec.name)
    client = HomoSecureBoostClient(table.features, table.label, terms=terms, feature_names=table.feature_names)
    model = client.serve(ctx.channel, aggregator)
    _save_model(ctx, model)
    return _local_model(model, test)


def _homo_sums(options: dict) -> tuple[SecAggConfig, int, float]:
    """The secure sums' settings, read alike by every party: a client holds the aggregator to its copy."""
    tolerance, round_timeout = options.get("dropout_tolerance", 0.3), options.get("round_timeout", 300)
    if type(tolerance) not in (int, float) or type(round_timeout) not in (int, float) or round_timeout <= 0:
        raise ConfigError("dropout_tolerance and round_timeout must be numbers (round_timeout positive)")
    min_clients = int_option(options, "min_clients", 2, 2)
    return SecAggConfig(dropout_tolerance=float(tolerance)), min_clients, float(round_timeout)


def _aggregate(ctx: PartyContext, part: HomoSecureBoostAggregator, clients: list[str]) -> horizontal.LocalModel:
    model = part.fit(ctx.channel, clients, progress=lambda record: ctx.events.emit(step="train", **record))
    _save_model(ctx, model, clients=part.history_)
    data = ctx.spec.party(ctx.party).data  # the aggregator's own labelled rows, if any, evaluate the model
    return _local_model(model, _test_rows(ctx, data.path, model.feature_names) if data else None)


def _save_model(ctx: PartyContext, model: HomoTreeModel, **extra: Any) -> None:
    ctx.write_json("model.json", {"model": "homo_secureboost", "role": ctx.role, "task": model.objective.name,
                                  **model.to_dict(), **extra})


def _test_rows(ctx: PartyContext, path: Path, features: list[str]) -> PartyTable:
    data = ctx.spec.party(ctx.party).data
    if data.label is None:
        raise ConfigError(f"party {ctx.party!r} needs a 'label' in its data to evaluate")
    return read_table(path, party=ctx.party, id_column=data.id, label_column=data.label,
                      feature_columns=features, missing="keep")


class _TreeScorer:
    """The trees as :class:`horizontal.LocalModel` expects its model: a task and ``predict(parameters, X)``.

    The trees are their own parameters, so ``parameters`` (an empty list) is not used.
    """

    def __init__(self, model: HomoTreeModel):
        self.model = model
        self.task = model.objective.name

    def predict(self, parameters: list, X: np.ndarray) -> np.ndarray:
        return self.model.scores(X)


def _local_model(model: HomoTreeModel, evaluation: PartyTable | None) -> horizontal.LocalModel:
    return horizontal.LocalModel(_TreeScorer(model), [], evaluation)

