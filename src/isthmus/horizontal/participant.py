"""The client role: answer the aggregator's requests with a :class:`~isthmus.horizontal.client.Client`.

:class:`ClientProtocol` is the whole client side of the protocol with no transport: a request in, a
reply out. :func:`run_client` serves it over a :class:`~isthmus.transport.Channel`; the simulation
calls it directly. The client is purely reactive, so an aggregator that gives up on it mid-round never
leaves it waiting on a stage: the next request (a new round, or stop) simply replaces the old state.

The client takes no setting from the aggregator on trust: whether rounds are secure, the fixed point,
the clipping and noise of differential privacy and the quorum of every secure sum come from its own
:class:`ClientTerms` (its job file), and a request that differs is refused, naming the setting.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.crypto.secagg import to_lattice, to_ring
from isthmus.errors import ConfigError, ProtocolError, for_peer
from isthmus.horizontal.client import Client, Parameters
from isthmus.horizontal.dp import DPConfig, clip_l2, lattice_noise
from isthmus.horizontal.secure_sum import SESSION_BYTES, SecAggClient, SecAggTerms
from isthmus.horizontal.updates import contribution, flatten
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

log = logging.getLogger("isthmus.horizontal")

REQUEST_TAG = "hfl/request"


def reply_tag(op: str, server_round: int) -> str:
    """Replies are tagged per stage and round, so a late reply can never be taken for a newer one."""
    return f"hfl/{op}/{server_round}"


@dataclass(frozen=True)
class ClientTerms:
    """What a client agreed to in its own job file; the aggregator's requests must match it.

    ``secagg`` (its signing key, the pinned keys of the other clients, the settings and quorum of
    secure sums) is needed when ``secure``. Under ``dp`` without secure aggregation the aggregator adds
    the noise, so the client trusts it with its update (as it must anyway).
    """

    secure: bool = True
    secagg: SecAggTerms | None = None
    dp: DPConfig | None = None
    #: Clip this client's update to this L2 norm before masking (the aggregator refuses longer mean updates).
    update_clip: float | None = None

    def __post_init__(self) -> None:
        if self.secure and (self.secagg is None or self.secagg.keyring.signing_key is None):
            raise ConfigError("a client under secure aggregation needs its signing key and the pinned keys of the "
                              "other clients")
        if self.secure and self.dp:
            self.dp.check_lattice(self.secagg.config.fractional_bits)


@dataclass
class _Update:
    """A client's trained result, kept until it is masked."""

    delta: np.ndarray
    num_examples: int
    metrics: dict[str, float]
    secagg: SecAggClient


class ClientProtocol:
    """One client's side of the horizontal protocol, transport-free."""

    def __init__(self, name: str, client: Client, terms: ClientTerms, aggregator: str = "aggregator"):
        self.name = name
        self.client = client
        self.terms = terms
        self.aggregator = aggregator
        self.rounds_fitted = 0
        self.final_parameters: Parameters | None = None
        self.stop_reason: str | None = None
        self._like: Parameters | None = None
        self._round = -1
        self._pending: _Update | None = None

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def handle(self, request: Any) -> dict | None:
        """The reply to one request, or ``None`` for notifications (drop, stop)."""
        check = Inspect(self.aggregator, REQUEST_TAG)
        check.mapping(request, {"op", "round"})
        op, server_round = request["op"], check.integer(request["round"], 0, 1 << 31)
        handler = {
            "get_parameters": self._get_parameters,
            "fit": self._fit,
            "share_keys": self._share_keys,
            "masked_input": self._masked_input,
            "consistency": self._consistency,
            "unmask": self._unmask,
            "evaluate": self._evaluate,
            "drop": self._drop,
            "stop": self._stop,
        }.get(op)
        if handler is None:
            check.fail(f"unknown request {op!r:.40}")
        return handler(request, server_round, Inspect(self.aggregator, reply_tag(op, server_round)))

    def _get_parameters(self, request: dict, server_round: int, check: Inspect) -> dict:
        return {"parameters": self._expected()}

    def _fit(self, request: dict, server_round: int, check: Inspect) -> dict:
        check.mapping(request, {"parameters", "config"})
        parameters = [p.copy() for p in check.parameters(request["parameters"], self._expected())]
        config = check.mapping(request["config"], set())
        secure = request.get("secure")
        if (secure is not None) != self.terms.secure:  # check before training, so a bad request costs nothing
            check.fail(f"the aggregator asks for a round {'with' if secure is not None else 'without'} secure "
                       f"aggregation; this client's job file sets secure_aggregation: {str(self.terms.secure).lower()}")
        if secure is not None:
            check.mapping(secure, {"session", "fractional_bits"})
            session = check.raw(secure["session"], length=SESSION_BYTES)
            _same(check, "fractional_bits", check.integer(secure["fractional_bits"], 8, 40),
                  self.terms.secagg.config.fractional_bits)
        self._pending, self._round = None, server_round
        result = self.client.fit(parameters, config)
        own = Inspect(self.name, "fit result")  # our own model's output: reject it before it leaves
        new = own.parameters(list(result.parameters), self._expected())
        num_examples = own.integer(operator.index(result.num_examples), 1, 1 << 50)
        metrics = own.metrics(_floats(result.metrics))
        self.rounds_fitted += 1
        if secure is None:
            return {"parameters": new, "num_examples": num_examples, "metrics": metrics}
        delta = flatten(new) - flatten(parameters)
        secagg = SecAggClient(self.name, self.terms.secagg, session, reply_tag("fit", server_round), self.aggregator)
        self._pending = _Update(delta, num_examples, metrics, secagg)
        return {**secagg.advertise(), "metric_keys": sorted(metrics)}

    def _share_keys(self, request: dict, server_round: int, check: Inspect) -> dict:
        return self._current(server_round, check).secagg.share_keys(request)

    def _masked_input(self, request: dict, server_round: int, check: Inspect) -> dict:
        secagg, encoded = self._encoded_update(request, server_round, check)
        return secagg.masked_input(request, encoded)

    def prepare_masking(self, request: Any) -> tuple[SecAggClient, np.ndarray]:
        """For the simulation, which masks many clients together: this client's secrets and encoded update."""
        check = Inspect(self.aggregator, REQUEST_TAG)
        check.mapping(request, {"op", "round"})
        if request["op"] != "masked_input":
            check.fail("only a masked_input request can be prepared")
        server_round = check.integer(request["round"], 0, 1 << 31)
        return self._encoded_update(
            request, server_round, Inspect(self.aggregator, reply_tag("masked_input", server_round))
        )

    def _encoded_update(self, request: dict, server_round: int, check: Inspect) -> tuple[SecAggClient, np.ndarray]:
        update = self._current(server_round, check)
        check.mapping(request, {"metric_keys", "summands", "dp"})
        keys = check.names(request["metric_keys"], set(update.metrics)) if request["metric_keys"] else []
        summands = check.integer(request["summands"], 1, 1 << 24)
        dp, bits = self.terms.dp, self.terms.secagg.config.fractional_bits
        noise_std = self._check_dp(request["dp"], check)
        delta = update.delta if self.terms.update_clip is None else clip_l2(update.delta, self.terms.update_clip)
        vector = contribution(delta, update.num_examples, update.metrics, keys, dp)
        lattice = to_lattice(vector, bits, toward_zero=dp is not None)  # toward zero: the clip still holds
        if dp is not None:
            lattice[: update.delta.size] += lattice_noise(update.delta.size, noise_std, bits)
        return update.secagg, to_ring(lattice, bits, summands)

    def _check_dp(self, settings: Any, check: Inspect) -> float:
        """The noise this client adds, after checking the aggregator's DP settings against its own."""
        dp = self.terms.dp
        if (settings is None) != (dp is None):
            check.fail(f"the aggregator's dp settings ({'none' if settings is None else 'given'}) differ from this "
                       f"client's job file (dp {'off' if dp is None else 'on'}): refused")
        if dp is None:
            return 0.0
        check.mapping(settings, {"clip_norm", "noise_multiplier", "noise_std"})
        own = {"clip_norm": dp.clip_norm, "noise_multiplier": dp.noise_multiplier,
               "noise_std": dp.noise_std(self.terms.secagg.quorum.minimum)}
        for setting, value in own.items():
            _same(check, setting, check.number(settings[setting]), value)
        return own["noise_std"]

    def _consistency(self, request: dict, server_round: int, check: Inspect) -> dict:
        return self._current(server_round, check).secagg.confirm(request)

    def _unmask(self, request: dict, server_round: int, check: Inspect) -> dict:
        reply = self._current(server_round, check).secagg.unmask(request)
        self._pending = None  # the round is over for us: forget its secrets
        return reply

    def _evaluate(self, request: dict, server_round: int, check: Inspect) -> dict:
        check.mapping(request, {"parameters", "config"})
        parameters = [p.copy() for p in check.parameters(request["parameters"], self._expected())]
        result = self.client.evaluate(parameters, check.mapping(request["config"], set()))
        if result is None:
            return {"skipped": True}
        own = Inspect(self.name, "evaluate result")
        return {
            "loss": own.number(float(result.loss)),
            "num_examples": own.integer(operator.index(result.num_examples), 1, 1 << 50),
            "metrics": own.metrics(_floats(result.metrics)),
        }

    def _drop(self, request: dict, server_round: int, check: Inspect) -> None:
        if server_round == self._round:
            self._pending = None
        log.info("%s: dropped from round %d: %s", self.name, server_round, str(request.get("reason", ""))[:200])

    def _stop(self, request: dict, server_round: int, check: Inspect) -> None:
        check.mapping(request, {"parameters", "reason"})
        if request["parameters"] is not None:
            self.final_parameters = check.parameters(request["parameters"], self._expected())
        self.stop_reason = str(request["reason"])[:2000] or "finished"
        self._pending = None

    def _current(self, server_round: int, check: Inspect) -> _Update:
        if self._pending is None or server_round != self._round:
            check.fail(f"no secure-aggregation state for round {server_round}")
        return self._pending

    def _expected(self) -> Parameters:
        if self._like is None:
            self._like = [np.asarray(p) for p in self.client.get_parameters()]
            if not self._like or any(p.dtype.kind != "f" for p in self._like):
                raise ProtocolError("a client's parameters must be a non-empty list of float arrays", peer=self.name)
        return self._like


def _same(check: Inspect, setting: str, got: float, own: float) -> None:
    if not math.isclose(got, own, rel_tol=1e-12):
        check.fail(f"the aggregator's {setting} {got!r} differs from this client's job file ({own!r}): refused")


def _floats(metrics: dict) -> dict[str, float]:
    """A model's own metrics with numpy scalars made plain floats (they are checked afterwards)."""
    return {key: float(value) for key, value in dict(metrics).items()}


@dataclass
class ClientOutcome:
    """How a client's part of the job ended; ``parameters`` is its copy of the final global model."""

    parameters: Parameters | None
    rounds_fitted: int
    reason: str


def run_client(
    channel: Channel, aggregator: str, client: Client, *, terms: ClientTerms, idle_timeout: float | None = None,
    on_fit: Callable[[int], None] = lambda server_round: None,
) -> ClientOutcome:
    """Serve ``client`` to ``aggregator`` on ``terms`` until it says stop; returns this party's copy of the final model.

    A failure while handling one request (the model raised, a request did not validate) is logged and
    reported to the aggregator, which leaves this client out of that round; the client keeps serving.
    ``idle_timeout`` bounds the wait for the next request (default: the channel's); ``on_fit`` is told each
    round this client trained in.
    """
    protocol = ClientProtocol(channel.party, client, terms, aggregator)
    while not protocol.stopped:
        request = channel.recv(aggregator, REQUEST_TAG, timeout=idle_timeout)
        fitted = protocol.rounds_fitted
        try:
            reply = protocol.handle(request)
        except Exception as exc:  # one bad round must not end the client; the aggregator learns why
            if not (
                isinstance(request, dict) and isinstance(request.get("op"), str) and type(request.get("round")) is int
            ):
                raise
            log.warning("%s: %s in round %s failed: %s", channel.party, request["op"], request["round"], exc)
            reply = {"error": for_peer(exc)}
        if protocol.rounds_fitted > fitted:
            on_fit(request["round"])
        if reply is not None:
            channel.send(aggregator, reply_tag(request["op"], request["round"]), reply)
    return ClientOutcome(protocol.final_parameters, protocol.rounds_fitted, protocol.stop_reason or "")
