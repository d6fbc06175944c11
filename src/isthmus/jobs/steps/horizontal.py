"""Horizontal logistic and linear regression as job steps: clients train on their own rows, an aggregator averages.

Clients hold rows with the same columns. Each round they train the global model locally and the
aggregator learns only the sum of their updates (secure aggregation, on by default); a client that
crashes or stops answering is left out while ``min_clients`` remain. Every party keeps its copy of
the final model and evaluates it on its own held-out rows: nothing is scored jointly.

Every party reads the same `train` options; a client holds the aggregator to its own copy of them
(:class:`~isthmus.horizontal.participant.ClientTerms`). Secure aggregation signs each client's keys
with its Ed25519 signing key from its certificate folder, checked against the federation's pinned keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError, DataError, IsthmusError, PeerUnreachableError
from isthmus.horizontal import (
    STRATEGIES,
    DPConfig,
    LinearClient,
    LinearModel,
    RoundRecord,
    SecAggConfig,
    Strategy,
    run_aggregator,
    run_client,
)
from isthmus.horizontal.dp import epsilon
from isthmus.horizontal.participant import ClientTerms, reply_tag
from isthmus.horizontal.secure_sum import Keyring, SecAggTerms
from isthmus.protocols.inspect import MAX_NAME, Inspect
from isthmus.incentive.endorse import check_keys
from isthmus.incentive.signing import federation_file, load_pinned_keys, load_signing_key
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import DataSpec, JobSpec
from isthmus.jobs.steps.data import party_table
from isthmus.ml.metrics import write_report
from isthmus.transport.channel import Channel, RelayChannel

#: Job-file model name -> the task of its :class:`LinearModel`.
MODELS = {"homo_lr": "binary", "homo_linr": "regression"}
FEATURES_TAG = "hfl-job/features"
CHECKPOINTS = "checkpoints"
MAX_FEATURES = 1 << 20


@dataclass(frozen=True)
class HorizontalSettings:
    """The `train` options of a horizontal job; every party reads the same values from the job file."""

    task: str
    rounds: int = 20
    strategy: str = "fedavg"
    strategy_options: dict[str, Any] = field(default_factory=dict)  # e.g. proximal_mu (fedprox), eta (fedadam)
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.1
    alpha: float = 0.0  # L2: each client minimises mean loss + alpha/2 |w|^2, as in hetero jobs
    secure_aggregation: bool = True
    dropout_tolerance: float = 0.3
    min_clients: int = 2
    fraction_fit: float = 1.0
    dp: DPConfig | None = None  # from {clip_norm, noise_multiplier, delta}
    round_timeout: float = 300.0
    seed: int = 0
    fail_after_round: dict[str, int] = field(default_factory=dict)  # fault injection for demos and tests

    def __post_init__(self) -> None:
        checks = {
            "rounds": _is_int(self.rounds, 1),
            "local_epochs": _is_int(self.local_epochs, 1),
            "batch_size": _is_int(self.batch_size, 1),
            "min_clients": _is_int(self.min_clients, 1),
            "seed": _is_int(self.seed, 0),
            "learning_rate": _is_number(self.learning_rate) and self.learning_rate > 0,
            "alpha": _is_number(self.alpha) and self.alpha >= 0,
            "dropout_tolerance": _is_number(self.dropout_tolerance) and 0 <= self.dropout_tolerance < 1,
            "fraction_fit": _is_number(self.fraction_fit) and 0 < self.fraction_fit <= 1,
            "round_timeout": _is_number(self.round_timeout) and self.round_timeout > 0,
            "secure_aggregation": isinstance(self.secure_aggregation, bool),
            "strategy_options": isinstance(self.strategy_options, dict),
            "fail_after_round": isinstance(self.fail_after_round, dict)
            and all(_is_int(r, 1) for r in self.fail_after_round.values()),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"train: invalid values for {bad}; see docs/jobs.md (horizontal jobs)")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"train: strategy {self.strategy!r} is not one of {sorted(STRATEGIES)}")

    @classmethod
    def parse(cls, model: str, options: dict) -> HorizontalSettings:
        known = {f.name for f in fields(cls)} - {"task"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"train: unknown options {unknown} for {model}; known: {sorted(known)}")
        values = dict(options)
        if values.get("dp") is not None:
            values["dp"] = _dp_config(values["dp"])
        return cls(task=MODELS[model], **values)

    @property
    def secagg(self) -> SecAggConfig:
        return SecAggConfig(dropout_tolerance=float(self.dropout_tolerance))

    def client_terms(self, ctx: PartyContext, clients: list[str]) -> ClientTerms:
        """What this client holds the aggregator to: these settings, and the quorum they give every sum."""
        if not self.secure_aggregation:
            return ClientTerms(secure=False, dp=self.dp)
        committee = self.make_strategy(None).sample_size(len(clients))
        terms = SecAggTerms(secagg_keyring(ctx, clients), self.secagg, self.secagg.quorum(committee, self.min_clients),
                            ctx.spec.name)
        return ClientTerms(secure=True, secagg=terms, dp=self.dp)

    def linear_model(self, n_features: int) -> LinearModel:
        return LinearModel(n_features, task=self.task, learning_rate=float(self.learning_rate),
                           batch_size=self.batch_size, epochs=self.local_epochs, l2=float(self.alpha))

    def make_strategy(self, evaluate_fn: Callable[[list[np.ndarray]], dict[str, float]] | None) -> Strategy:
        try:
            return STRATEGIES[self.strategy](fraction_fit=float(self.fraction_fit), min_fit_clients=self.min_clients,
                                             evaluate_fn=evaluate_fn, seed=self.seed, **self.strategy_options)
        except TypeError as exc:  # an option the strategy does not take
            raise ConfigError(f"train: strategy_options for {self.strategy}: {exc}") from None


def _dp_config(raw: Any) -> DPConfig:
    if not isinstance(raw, dict) or not {"clip_norm", "noise_multiplier"} <= set(raw) <= {
        "clip_norm", "noise_multiplier", "delta"
    } or not all(_is_number(value) for value in raw.values()):
        raise ConfigError("train: dp needs numbers clip_norm and noise_multiplier, and optionally delta")
    return DPConfig(**{key: float(value) for key, value in raw.items()})


def _is_int(value: Any, low: int) -> bool:
    return type(value) is int and value >= low


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and np.isfinite(value)


def secagg_keyring(ctx: PartyContext, clients: list[str]) -> Keyring:
    """The pinned signing keys of the job's clients and, at a client, its own signing key: from its certificates.

    Only the job's clients are trusted to sign keys for a secure sum: not the aggregator, nor any other
    member of the federation.
    """
    if ctx.certs_dir is None:
        raise ConfigError(f"party {ctx.party!r}: secure aggregation needs the party's certificate folder (its signing "
                          "key and the federation's pinned keys): run the job with `isthmus run --certs` or "
                          "`isthmus launch`")
    pinned = load_pinned_keys(federation_file(ctx.certs_dir))
    signing_key = None
    if ctx.party in clients:
        signing_key = load_signing_key(ctx.certs_dir, ctx.party)
        check_keys(ctx.party, clients, signing_key, pinned)
    elif missing := sorted(set(clients) - set(pinned)):
        raise ConfigError(f"the federation file pins no signing key for {missing}")
    return Keyring({client: pinned[client].public_bytes_raw() for client in clients}, signing_key)


def aggregator_of(spec: JobSpec) -> str:
    """The one party that aggregates: named `aggregator`, or the `arbiter` of the job."""
    names = spec.with_role("aggregator") + spec.with_role("arbiter")
    if len(names) != 1:
        raise ConfigError(f"a horizontal job needs exactly one aggregator (or arbiter), found {names or 'none'}")
    return names[0]


def _clients(spec: JobSpec, settings: HorizontalSettings) -> list[str]:
    clients = spec.with_role("client")
    others = sorted(set(spec.parties) - set(clients) - {aggregator_of(spec)})
    if others:
        raise ConfigError(f"a horizontal job has clients and one aggregator; {others} are neither")
    if len(clients) < max(settings.min_clients, 2):
        raise ConfigError(f"a horizontal job needs at least max(2, min_clients={settings.min_clients}) clients, "
                          f"found {clients}")
    strangers = sorted(set(settings.fail_after_round) - set(clients))
    if strangers:
        raise ConfigError(f"train: fail_after_round names {strangers}, which are not clients of the job")
    return clients


def train_logistic(ctx: PartyContext, options: dict) -> LocalModel:
    return _train(ctx, options, model="homo_lr")


def train_linear(ctx: PartyContext, options: dict) -> LocalModel:
    return _train(ctx, options, model="homo_linr")


def _train(ctx: PartyContext, options: dict, *, model: str) -> LocalModel:
    settings = HorizontalSettings.parse(model, options)
    clients, aggregator = _clients(ctx.spec, settings), aggregator_of(ctx.spec)
    if ctx.party == aggregator:
        return _aggregate(ctx, settings, model, clients)
    return _serve(ctx, settings, model, clients, aggregator)


# --- the client ----------------------------------------------------------------------------------


def _serve(ctx: PartyContext, settings: HorizontalSettings, model: str, clients: list[str],
           aggregator: str) -> LocalModel:
    table = party_table(ctx)
    if table.label is None:
        raise ConfigError(f"client {ctx.party!r} needs a 'label' column in its data to train {model}")
    _check_labels(ctx.party, table, model)
    data = ctx.spec.party(ctx.party).data
    test = read_rows(ctx.party, data, data.test, table.feature_names) if data.test else None  # fail before training
    if test is not None:
        _check_labels(ctx.party, test, model)
    terms = settings.client_terms(ctx, clients)  # the keys are there before anything is sent
    ctx.channel.send(aggregator, FEATURES_TAG, table.feature_names)
    linear = settings.linear_model(len(table.feature_names))
    client = LinearClient(linear, table.features, table.label, seed=settings.seed + clients.index(ctx.party))
    channel = ctx.channel
    if ctx.party in settings.fail_after_round:
        channel = _crash_injector(ctx, settings)
    ctx.events.emit(step="train", status="serving", aggregator=aggregator, rows=table.n_rows)
    outcome = run_client(channel, aggregator, client, terms=terms)
    if outcome.parameters is None:
        raise IsthmusError(f"aggregator {aggregator!r} ended the job without a model: {outcome.reason}")
    _save_model(ctx, model, settings.task, table.feature_names, outcome.parameters, rounds_fitted=outcome.rounds_fitted)
    return LocalModel(linear, outcome.parameters, test)


def _check_labels(party: str, table: PartyTable, model: str) -> None:
    if MODELS[model] == "binary" and not np.isin(table.label, (0.0, 1.0)).all():
        raise DataError(f"party {party!r}: {model} needs labels 0 and 1, found {np.unique(table.label)[:5].tolist()}")


def _crash_injector(ctx: PartyContext, settings: HorizontalSettings) -> Channel:
    """Fault injection: die in round ``fail_after_round`` once this client's share of the masking is out.

    Under secure aggregation that is right after sending its key shares (so the aggregator must rebuild
    the masks it shares with others without it); in the clear, right after sending its update.
    """
    first = settings.fail_after_round[ctx.party]
    stage = "share_keys" if settings.secure_aggregation else "fit"
    tags = {reply_tag(stage, r) for r in range(first, settings.rounds + 1)}

    def announce() -> None:
        ctx.events.emit(step="train", status="dropped out", reason=f"fault injection: fail_after_round {first}")

    return _CrashAfterSending(ctx.channel, tags, announce)


# --- the aggregator ------------------------------------------------------------------------------


def _aggregate(ctx: PartyContext, settings: HorizontalSettings, model: str, clients: list[str]) -> LocalModel:
    dp = settings.dp
    if dp:  # without the accountant this fails now, not after training
        epsilon(dp, 0, contributors=1, dimension=1, fractional_bits=settings.secagg.fractional_bits)
    keyring = secagg_keyring(ctx, clients) if settings.secure_aggregation else None
    data = ctx.spec.party(ctx.party).data
    if data and data.test:
        raise ConfigError(f"aggregator {ctx.party!r}: its data is its evaluation set; give it as 'path', not 'test'")
    features = _agreed_features(ctx.channel, clients)
    linear = settings.linear_model(len(features))
    held_out = read_rows(ctx.party, data, data.path, features) if data else None
    if held_out is not None:
        _check_labels(ctx.party, held_out, model)
    evaluate_fn = (lambda p: linear.metrics(p, held_out.features, held_out.label)) if held_out is not None else None
    result = run_aggregator(
        _GiveUpOnUnreachable(ctx.channel), clients, settings.make_strategy(evaluate_fn), settings.rounds,
        secure=settings.secure_aggregation, secagg=settings.secagg, keyring=keyring, job=ctx.spec.name, dp=dp,
        initial_parameters=linear.initial_parameters(), min_clients=settings.min_clients,
        round_timeout=float(settings.round_timeout), checkpoint_dir=ctx.run_dir / CHECKPOINTS,
        resume=bool(ctx.spec.options.get("resume", False)),
        progress=lambda record: _report_round(ctx, settings.rounds, record),
    )
    _save_model(ctx, model, settings.task, features, result.parameters, strategy=settings.strategy,
                secure_aggregation=settings.secure_aggregation, epsilon=result.epsilon,
                history=[asdict(record) for record in result.history])
    return LocalModel(linear, result.parameters, held_out)


def _agreed_features(channel: Channel, clients: list[str]) -> list[str]:
    """The clients' column names, which must agree in order too: the order gives each weight its meaning."""
    agreed, first = None, None
    for client in clients:
        names = channel.recv(client, FEATURES_TAG)
        if not (isinstance(names, list) and 0 < len(names) <= MAX_FEATURES
                and all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names)):
            Inspect(client, FEATURES_TAG).fail("expected a non-empty list of column names")
        if agreed is None:
            agreed, first = names, client
        elif names != agreed:
            where = next((i for i, (a, b) in enumerate(zip(names, agreed, strict=False)) if a != b),
                         min(len(names), len(agreed)))
            raise DataError(f"client {client!r} has other columns than {first!r}: {len(names)} vs {len(agreed)}, "
                            f"first difference at position {where}")
    return agreed


def _report_round(ctx: PartyContext, rounds: int, record: RoundRecord) -> None:
    event: dict[str, Any] = {"epoch": record.round, "epochs": rounds, "clients": len(record.clients)}
    if "loss" in record.fit_metrics:
        event["loss"] = record.fit_metrics["loss"]
    if record.left_out:
        event["left_out"] = sorted(record.left_out)
    event.update({f"aggregator_{name}": value for name, value in record.central_metrics.items()})
    ctx.events.emit(step="train", **event)


# --- what every party keeps ------------------------------------------------------------------------


def _save_model(ctx: PartyContext, model: str, task: str, features: list[str], parameters: list[np.ndarray],
                **extra: Any) -> None:
    ctx.write_json("model.json", {"model": model, "role": ctx.role, "task": task, "features": features,
                                  "coef": parameters[0], "intercept": float(parameters[1][0]), **extra})


def read_rows(party: str, data: DataSpec, path: Path, features: list[str]) -> PartyTable:
    """Labelled rows of ``path`` with exactly ``features``, in that order (the columns the model was trained on)."""
    if data.label is None:
        raise ConfigError(f"party {party!r} needs a 'label' in its data to evaluate")
    return read_table(path, party=party, id_column=data.id, label_column=data.label, feature_columns=features)


@dataclass
class LocalModel:
    """A party's copy of the final global model and the rows it evaluates it on (``None``: nothing to evaluate)."""

    model: LinearModel
    parameters: list[np.ndarray]
    evaluation: PartyTable | None


def evaluate_locally(ctx: PartyContext, trained: LocalModel, *, metrics: list[str] | None, threshold: float) -> None:
    """The `evaluate` step of a horizontal job: this party scores its own held-out rows; nothing is sent."""
    rows = trained.evaluation
    if rows is None:
        ctx.events.emit(step="evaluate", status="skipped", reason="no test data at this party")
        return
    scores = trained.model.predict(trained.parameters, rows.features)
    result = write_report(ctx.run_dir, trained.model.task, rows.label, scores, metrics, threshold=threshold)
    pd.DataFrame({"id": rows.ids, "label": rows.label, "score": scores}).to_csv(ctx.run_dir / "predictions.csv",
                                                                                index=False)
    ctx.events.emit(step="evaluate", rows=rows.n_rows,
                    **{name: round(value, 6) for name, value in result.items() if isinstance(value, float)})


# --- channels with a twist -------------------------------------------------------------------------


class _GiveUpOnUnreachable(RelayChannel):
    """The aggregator does not retry a client that stayed unreachable for a whole connect timeout.

    The transport retries an unreachable peer for ``connect_timeout`` (it cannot tell a peer that is not
    up yet from one that is gone); without this, every later request to a crashed client would stall
    its round that long again.
    """

    def __init__(self, inner: Channel):
        super().__init__(inner)
        self.gone: set[str] = set()

    def send(self, to: str, tag: str, obj: Any) -> None:
        if to in self.gone:
            raise PeerUnreachableError("gave up after an earlier connect timeout; not retried", peer=to, tag=tag)
        try:
            self.inner.send(to, tag, obj)
        except PeerUnreachableError:
            self.gone.add(to)
            raise


class _CrashAfterSending(RelayChannel):
    """Fault injection: the process ends right after sending under one of ``tags``, without telling anyone.

    It exits with status 0 because the crash is what the job asked for (so `isthmus launch` does not
    report it as a failure); the party's events say it dropped out on purpose.
    """

    def __init__(self, inner: Channel, tags: set[str], announce: Callable[[], None]):
        super().__init__(inner)
        self.tags = tags
        self.announce = announce

    def send(self, to: str, tag: str, obj: Any) -> None:
        self.inner.send(to, tag, obj)
        if tag in self.tags:
            self.announce()
            os._exit(0)
