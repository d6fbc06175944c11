"""The aggregator role: run rounds of a strategy over a fleet of clients, securely by default.

Each round: the strategy picks clients and a config; they train from the global parameters; the
aggregator obtains the sum of their weighted updates (through secure aggregation unless
``secure=False``), the strategy turns the mean update into new parameters; optionally clients and the
aggregator evaluate; the round is checkpointed. Clients that crash, time out or send something
malformed are left out with a logged reason while at least ``min_clients`` remain.

What is validated: in the clear, every update's shapes, dtypes and finiteness; under secure
aggregation the aggregator cannot see an update, so it checks what it can (signatures on keys and on
the survivor list, vector length and dtype, key and share sizes, recovered secrets against
commitments, a positive total weight) and each client checks its own update before masking it.

Federated evaluation (``fraction_evaluate`` > 0) sends each client's loss, metrics and test-row count
in the clear, as Flower does; it is off by default, so by default the aggregator learns only sums.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from isthmus.crypto.secagg import SecAggError, decode_fixed, to_lattice
from isthmus.errors import ConfigError, IsthmusError, ProtocolError, for_peer
from isthmus.horizontal.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from isthmus.horizontal.dp import DPConfig, clip_l2, epsilon, lattice_noise
from isthmus.horizontal.fleet import ChannelFleet, Failures, Fleet
from isthmus.horizontal.participant import reply_tag
from isthmus.horizontal.robust import RobustRule, robust_center, within_bound
from isthmus.horizontal.secure_sum import SESSION_BYTES, Keyring, SecAggConfig, SecAggServer, SecAggTerms
from isthmus.horizontal.strategy import Strategy
from isthmus.horizontal.updates import (
    Aggregate,
    RoundUpdates,
    aggregate_from_sum,
    contribution,
    flatten,
    unflatten,
    vector_length,
)
from isthmus.protocols.inspect import MAX_METRICS, Inspect
from isthmus.transport.channel import Channel

log = logging.getLogger("isthmus.horizontal")

Parameters = list[np.ndarray]


class TooFewClientsError(IsthmusError):
    """Fewer than ``min_clients`` clients delivered a usable update in a round."""


@dataclass
class RoundRecord:
    round: int
    clients: list[str]  # whose updates are in the aggregate
    left_out: dict[str, str]  # client -> why its update is not
    total_weight: float
    fit_metrics: dict[str, float]
    evaluate_metrics: dict[str, float] = field(default_factory=dict)  # clients' own data, example-weighted
    central_metrics: dict[str, float] = field(default_factory=dict)  # the aggregator's data
    seconds: float = 0.0
    refused: str = ""  # why the round's update was not applied, if it was not


@dataclass
class TrainingResult:
    parameters: Parameters
    history: list[RoundRecord]
    epsilon: float | None = None  # privacy spent, when differential privacy is on


@dataclass
class TrainingOptions:
    """Everything about a run except who takes part and the strategy."""

    secure: bool = True
    secagg: SecAggConfig = field(default_factory=SecAggConfig)
    keyring: Keyring | None = None  # the clients' pinned signing keys: needed when secure
    job: str = "isthmus"  # bound into every signature of a secure sum
    dp: DPConfig | None = None
    min_clients: int = 2
    round_timeout: float = 300.0  # seconds each stage of a round waits for clients' replies
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    progress: Callable[[RoundRecord], None] | None = None
    #: Sees each round's start model and every accepted update, in rounds without secure aggregation
    #: (contribution measurement needs them; under secure aggregation the aggregator never has them).
    observe: Callable[[RoundUpdates], None] | None = None
    #: In the clear only: the coordinate-wise median or trimmed mean instead of the weighted mean.
    robust: RobustRule | None = None
    trim_fraction: float = 0.1
    #: Every update's L2 norm bound: clipped here in the clear; under secure aggregation clients clip
    #: and a longer mean is refused (see :mod:`~isthmus.horizontal.robust`).
    update_clip: float | None = None


class Aggregator:
    """The round loop, independent of how clients are reached."""

    def __init__(self, fleet: Fleet, clients: list[str], strategy: Strategy, options: TrainingOptions):
        if len(set(clients)) != len(clients) or not clients:
            raise ConfigError(f"clients must be distinct and non-empty, got {clients}")
        if options.min_clients < 1 or (options.secure and options.min_clients < 2):
            raise ConfigError("min_clients must be >= 1 (>= 2 with secure aggregation: a sum of one is no secret)")
        if options.secure and options.keyring is None:
            raise ConfigError("secure aggregation needs the clients' pinned signing keys (a keyring)")
        if options.dp:
            options.dp.check_lattice(options.secagg.fractional_bits)
        if options.robust and (options.secure or options.dp):
            raise ConfigError("robust aggregation needs every update in the clear: no secure aggregation, no dp")
        if options.update_clip and options.dp:
            raise ConfigError("update_clip and dp both clip: dp's clip_norm already bounds every update")
        self.fleet = fleet
        self.clients = sorted(clients)
        self.strategy = strategy
        self.options = options
        committee = strategy.sample_size(len(self.clients))
        self.terms = None if not options.secure else SecAggTerms(
            options.keyring.public(), options.secagg, options.secagg.quorum(committee, options.min_clients), options.job
        )

    def run(self, rounds: int, initial_parameters: Parameters | None = None) -> TrainingResult:
        start, history, parameters = 1, [], initial_parameters
        saved = self._resume()
        if saved:
            start, parameters, history = saved.round + 1, saved.parameters, [RoundRecord(**h) for h in saved.history]
            self.strategy.load_state(saved.strategy_state)
            log.info("resuming after round %d from %s", saved.round, self.options.checkpoint_dir)
        server_round = start
        try:
            parameters = self._initial(parameters)
            for server_round in range(start, rounds + 1):
                record, parameters = self._round(server_round, parameters)
                history.append(record)
                self._checkpoint(server_round, parameters, history)
                if self.options.progress:
                    self.options.progress(record)
        except BaseException as exc:
            self.fleet.notify(
                self.clients, {"op": "stop", "round": server_round, "parameters": None, "reason": f"aborted: {for_peer(exc)}"}
            )
            raise
        self.fleet.notify(self.clients, {"op": "stop", "round": rounds, "parameters": parameters, "reason": "finished"})
        return TrainingResult(parameters, history, self._epsilon(rounds, sum(p.size for p in parameters)))

    def _round(self, server_round: int, parameters: Parameters) -> tuple[RoundRecord, Parameters]:
        began = time.monotonic()
        chosen, config = self.strategy.configure_fit(server_round, parameters, self.clients)
        fit = self._secure_fit if self.options.secure else self._plain_fit
        aggregate, contributors, left_out = fit(server_round, parameters, chosen, config)
        if left_out:
            log.warning(
                "round %d: left out %s", server_round, "; ".join(f"{c}: {why}" for c, why in sorted(left_out.items()))
            )
            self.fleet.notify(left_out, {"op": "drop", "round": server_round, "reason": "left out of this round"})
        refused = self._unbounded(aggregate, len(contributors))
        if refused:
            log.warning("round %d: %s", server_round, refused)
        new = parameters if refused else self.strategy.aggregate_fit(server_round, parameters, aggregate)
        if len(new) != len(parameters) or not all(np.isfinite(p).all() for p in new):
            raise IsthmusError(
                f"round {server_round}: strategy {self.strategy.name} produced non-finite or misshapen parameters"
            )
        record = RoundRecord(
            round=server_round,
            clients=contributors,
            left_out=left_out,
            total_weight=aggregate.total_weight,
            fit_metrics=aggregate.metrics,
            evaluate_metrics=self._evaluate(server_round, new),
            central_metrics=self.strategy.evaluate(server_round, new),
            refused=refused,
        )
        record.seconds = time.monotonic() - began
        return record, new

    def _unbounded(self, aggregate: Aggregate, contributors: int) -> str:
        """Why a securely summed round breaks ``update_clip`` (so some client did not clip), or ""."""
        clip = self.options.update_clip
        if not (self.options.secure and clip):
            return ""
        mean = flatten(aggregate.mean_update)
        if within_bound(mean, clip, self.options.secagg.fractional_bits, contributors):
            return ""
        return (f"not applied: the mean update's norm {np.linalg.norm(mean):.4g} exceeds update_clip {clip:g}, so a "
                "client did not clip its update")

    # --- fit, in the clear ---------------------------------------------------------------------

    def _plain_fit(self, server_round: int, parameters: Parameters, chosen: list[str], config: dict):
        replies, left_out = self._request(
            "fit", server_round, {c: {"parameters": parameters, "config": config} for c in chosen}
        )
        updates = {}
        for name, reply in sorted(replies.items()):
            try:
                updates[name] = self._check_update(name, server_round, reply, parameters)
            except ProtocolError as exc:
                left_out[name] = f"update rejected: {exc}"
        self._require(server_round, len(updates), "delivered a valid update")
        if self.options.observe:
            accepted = {client: (new, n) for client, (new, n, _) in updates.items()}
            self.options.observe(RoundUpdates(server_round, parameters, accepted))
        dp, clip = self.options.dp, self.options.update_clip
        keys = [] if dp else _common_keys(u[2] for u in updates.values())
        start = flatten(parameters)
        deltas = [flatten(new) - start for new, _, _ in updates.values()]
        if clip:
            deltas = [clip_l2(delta, clip) for delta in deltas]
        vectors = [contribution(delta, n, metrics, keys, dp) for delta, (_, n, metrics) in zip(deltas, updates.values())]
        if dp:  # the aggregator sees each update anyway, so it adds the whole noise (central DP), on the lattice
            bits = self.options.secagg.fractional_bits
            lattice = sum(to_lattice(v, bits, toward_zero=True) for v in vectors)
            lattice[: start.size] += lattice_noise(start.size, dp.noise_std(1), bits)
            total = decode_fixed(lattice.view(np.uint64), bits)
        else:
            total = sum(vectors)
        aggregate = aggregate_from_sum(total, parameters, keys, len(updates))
        if self.options.robust:
            center = robust_center(self.options.robust, np.stack(deltas), self.options.trim_fraction)
            aggregate.mean_update = unflatten(center, parameters)
        return aggregate, sorted(updates), left_out

    def _check_update(self, name: str, server_round: int, reply: object, parameters: Parameters):
        check = Inspect(name, f"hfl/fit/{server_round}")
        check.mapping(reply, {"parameters", "num_examples", "metrics"})
        new = check.parameters(reply["parameters"], parameters)
        return new, check.integer(reply["num_examples"], 1, 1 << 50), check.metrics(reply["metrics"])

    # --- fit, under secure aggregation -----------------------------------------------------------

    def _secure_fit(self, server_round: int, parameters: Parameters, chosen: list[str], config: dict):
        options = self.options
        session = secrets.token_bytes(SESSION_BYTES)
        secure = {"session": session, "fractional_bits": options.secagg.fractional_bits}
        messages = {c: {"parameters": parameters, "config": config, "secure": secure} for c in chosen}
        adverts, left_out = self._request("fit", server_round, messages)
        keys = self._agreed_metric_keys(server_round, adverts, left_out)
        server = SecAggServer(self.terms, session, reply_tag("fit", server_round), vector_length(parameters, keys))
        try:
            requests = server.start(adverts, asked=chosen)
            replies, failed = self._request("share_keys", server_round, requests)
            left_out.update(failed)
            requests = server.route_shares(replies)
            extra = {"metric_keys": keys, "summands": len(requests), "dp": self._dp_settings()}
            replies, failed = self._request(
                "masked_input", server_round, {c: {**r, **extra} for c, r in requests.items()}
            )
            left_out.update(failed)
            requests = server.collect_masked(replies)
            replies, failed = self._request("consistency", server_round, requests)
            requests = server.collect_signatures(replies)
            replies, unmasked = self._request("unmask", server_round, requests)
            failed.update(unmasked)
            total = decode_fixed(server.finish(replies), options.secagg.fractional_bits)
        except SecAggError as exc:
            raise SecAggError(f"round {server_round}: {exc}") from None
        finally:
            left_out.update({c: f"rejected: {why}" for c, why in server.rejected.items()})
        if failed:
            log.info("round %d: %d survivors did not help unmask (their input still counts): %s", server_round,
                     len(failed), "; ".join(f"{c}: {why}" for c, why in sorted(failed.items()))[:2000])
        survivors = server.survivors
        for name in survivors:
            left_out.pop(name, None)
        try:
            return aggregate_from_sum(total, parameters, keys, len(survivors)), survivors, left_out
        except ValueError as exc:
            raise SecAggError(f"round {server_round}: recovered sum is implausible: {exc}") from None

    def _agreed_metric_keys(self, server_round: int, adverts: dict, left_out: Failures) -> list[str]:
        """Fit metrics every advertising client reports (none under DP, whose noise does not cover them)."""
        declared = {}
        for name in sorted(adverts):
            check = Inspect(name, f"hfl/fit/{server_round}")
            try:
                reply = check.mapping(adverts[name], {"metric_keys"})
                keys = reply["metric_keys"]
                if not isinstance(keys, list) or len(keys) > MAX_METRICS or not all(isinstance(k, str) for k in keys):
                    check.fail("metric_keys must be a list of names")
                declared[name] = keys
            except ProtocolError as exc:
                left_out[name] = f"rejected: {exc}"
                del adverts[name]
        return [] if self.options.dp else _common_keys(declared.values())

    def _dp_settings(self) -> dict | None:
        """What each client adds: noise sized for the fewest inputs a sum may hold (clients check all three)."""
        dp = self.options.dp
        if dp is None:
            return None
        return {
            "clip_norm": dp.clip_norm,
            "noise_multiplier": dp.noise_multiplier,
            "noise_std": dp.noise_std(self.terms.quorum.minimum),
        }

    # --- evaluation, checkpoints, helpers ---------------------------------------------------------

    def _evaluate(self, server_round: int, parameters: Parameters) -> dict[str, float]:
        chosen, config = self.strategy.configure_evaluate(server_round, parameters, self.clients)
        if not chosen:
            return {}
        replies, _ = self._request(
            "evaluate", server_round, {c: {"parameters": parameters, "config": config} for c in chosen}
        )
        results = []
        for name, reply in replies.items():
            check = Inspect(name, f"hfl/evaluate/{server_round}")
            try:
                if isinstance(reply, dict) and reply.get("skipped") is True:
                    continue
                check.mapping(reply, {"loss", "num_examples", "metrics"})
                n = check.integer(reply["num_examples"], 1, 1 << 50)
                results.append((n, {"loss": check.number(reply["loss"]), **check.metrics(reply["metrics"])}))
            except ProtocolError as exc:
                log.warning("round %d: evaluation ignored: %s", server_round, exc)
        if not results:
            return {}
        total = sum(n for n, _ in results)
        keys = _common_keys(metrics for _, metrics in results)
        return {key: sum(n * metrics[key] for n, metrics in results) / total for key in keys}

    def _request(self, op: str, server_round: int, messages: dict) -> tuple[dict, Failures]:
        return self.fleet.request(op, server_round, messages, self.options.round_timeout)

    def _require(self, server_round: int, have: int, what: str) -> None:
        if have < self.options.min_clients:
            raise TooFewClientsError(
                f"round {server_round}: only {have} clients {what}; min_clients is {self.options.min_clients}"
            )

    def _initial(self, parameters: Parameters | None) -> Parameters:
        if parameters is None:  # ask one client, as Flower does
            first = self.clients[0]
            replies, failures = self._request("get_parameters", 0, {first: {}})
            if first not in replies:
                raise TooFewClientsError(f"no initial parameters: {failures.get(first)}")
            check = Inspect(first, "hfl/get_parameters/0")
            got = check.mapping(replies[first], {"parameters"})["parameters"]
            if (
                not isinstance(got, list)
                or not got
                or not all(isinstance(p, np.ndarray) and p.dtype.kind == "f" for p in got)
            ):
                check.fail("initial parameters must be a non-empty list of float arrays")
            parameters = check.parameters(got, got)
        return [np.asarray(p) for p in parameters]

    def _resume(self) -> Checkpoint | None:
        if not (self.options.resume and self.options.checkpoint_dir):
            return None
        return load_checkpoint(self.options.checkpoint_dir, self.strategy.name)

    def _checkpoint(self, server_round: int, parameters: Parameters, history: list[RoundRecord]) -> None:
        if self.options.checkpoint_dir:
            saved = Checkpoint(server_round, parameters, self.strategy.state(), [asdict(r) for r in history])
            save_checkpoint(self.options.checkpoint_dir, self.strategy.name, saved)

    def _epsilon(self, rounds: int, dimension: int) -> float | None:
        dp = self.options.dp
        if dp is None:
            return None
        contributors = self.terms.quorum.minimum if self.terms else 1
        return epsilon(dp, rounds, contributors=contributors, dimension=dimension,
                       fractional_bits=self.options.secagg.fractional_bits)


def _common_keys(key_sets) -> list[str]:
    sets = [set(keys) for keys in key_sets]
    return sorted(set.intersection(*sets)) if sets else []


def run_aggregator(
    channel: Channel,
    clients: list[str],
    strategy: Strategy,
    rounds: int,
    *,
    secure: bool = True,
    secagg: SecAggConfig | None = None,
    keyring: Keyring | None = None,
    job: str = "isthmus",
    dp: DPConfig | None = None,
    initial_parameters: Parameters | None = None,
    min_clients: int = 2,
    round_timeout: float = 300.0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[RoundRecord], None] | None = None,
    observe: Callable[[RoundUpdates], None] | None = None,
    robust: RobustRule | None = None,
    trim_fraction: float = 0.1,
    update_clip: float | None = None,
) -> TrainingResult:
    """Train ``rounds`` rounds of ``strategy`` with the ``clients`` reachable over ``channel``.

    ``round_timeout`` bounds each stage of a round (local training included in the first). With
    ``resume`` and a checkpoint in ``checkpoint_dir``, training continues after the last saved round.
    Clients end when told to stop, also when the aggregator fails (with the reason). Secure
    aggregation needs ``keyring``, the clients' pinned signing keys; signatures are bound to ``job``.
    """
    options = TrainingOptions(
        secure=secure,
        secagg=secagg or SecAggConfig(),
        keyring=keyring,
        job=job,
        dp=dp,
        min_clients=min_clients,
        round_timeout=round_timeout,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
        observe=observe,
        robust=robust,
        trim_fraction=trim_fraction,
        update_clip=update_clip,
    )
    return Aggregator(ChannelFleet(channel), clients, strategy, options).run(rounds, initial_parameters)
