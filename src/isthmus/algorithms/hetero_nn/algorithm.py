"""hetero_nn under the algorithm contract: split neural networks with a protected interactive layer.

Every party standardises its own columns over the aligned rows and runs its bottom model; the guest
holds the top model and its share W' of each host's interactive weights, each host its bottom model
and the other share (eps). A saved part therefore holds only one share: neither model.json alone
gives W_h. No key is saved: a host serving predictions makes a fresh Paillier key pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.algorithms.base import (Algorithm, GuestPart, HostPart, Party, Reference, Roster, Task, classifier_task,
                                     labels_to_hosts, representations_to_guest)
from isthmus.algorithms.hetero_nn import tags
from isthmus.algorithms.hetero_nn.guest import NNGuest
from isthmus.algorithms.hetero_nn.host import NNHost
from isthmus.algorithms.hetero_nn.interactive import (HostLink, PlainGuestLink, ProtectedGuestLink, initial_noise,
                                                      initial_share)
from isthmus.algorithms.hetero_nn.layers import load_state, seeded, sequential, state_lists, width
from isthmus.algorithms.hetero_nn.network import encode_labels, guest_network, outputs
from isthmus.algorithms.hetero_nn.options import MAX_WIDTH, NNOptions, check_layers
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError, DataError
from isthmus.ml.scaling import Standardizer
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

#: Widest bottom output a host may announce (an identity bottom passes all its columns).
MAX_BOTTOM_OUTPUT = 100 * MAX_WIDTH


@dataclass
class NNGuestPart(GuestPart):
    trained: NNGuest
    features: list[str]
    scaler: Standardizer | None
    classes: np.ndarray | None
    evaluation_rows: np.ndarray

    @property
    def task(self) -> Task:
        return self.trained.task

    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.trained.predict(channel, _scaled(self.scaler, X), np.asarray(rows, dtype=np.int64))

    def finish(self, channel: Channel) -> None:
        self.trained.finish(channel)

    def to_dict(self) -> dict[str, Any]:
        trained = self.trained
        return {"model": HeteroNN.name, "role": "guest", "task": self.task, "classes": self.classes,
                "features": self.features, "scaler": self.scaler.to_dict() if self.scaler else None,
                "options": trained.options.to_dict(), "layers": trained.layers, "network": state_lists(trained.network),
                "interactive": {link.host: link.weights for link in trained.links}, "history": trained.history}


@dataclass
class NNHostPart(HostPart):
    trained: NNHost
    features: list[str]
    scaler: Standardizer | None

    def serve(self, channel: Channel, X: np.ndarray) -> None:
        self.trained.serve(channel, _scaled(self.scaler, X))

    def to_dict(self) -> dict[str, Any]:
        link = self.trained.link
        return {"model": HeteroNN.name, "role": "host", "guest": link.guest, "features": self.features,
                "scaler": self.scaler.to_dict() if self.scaler else None, "options": self.trained.options.to_dict(),
                "layers": self.trained.layers, "bottom": state_lists(self.trained.bottom), "width": link.width, "noise_share": link.noise}


class HeteroNN(Algorithm):
    """Bottom models at every party, FATE's Paillier-protected interactive layer, a top model at the guest."""

    name = "hetero_nn"
    family = "vertical"
    imports = ("torch",)
    roles = {"guest": (1, 1), "host": (1, None)}
    Options = NNOptions
    discloses = {
        "guest": labels_to_hosts(
            "each host gets its bottom output's gradient row by row, which gives it the training rows' labels"),
        "host": representations_to_guest(
            "the guest gets each row's interactive-layer output z_h from each host, which tells much of its columns"),
    }

    def check(self, roster: Roster, options: NNOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        for party, role in roster.roles.items():
            if party not in options.bottom and role not in options.bottom:
                raise ConfigError(f"hetero_nn: bottom names no layers for party {party!r} nor for its role {role!r}")
        if options.protection == "plain" and not allow_plaintext:
            raise ConfigError("hetero_nn with protection: plain sends every host's bottom output to the guest in "
                              "clear (split learning): it exists for benchmarks only and needs the job option "
                              "benchmark_only_plaintext: true")

    def fit(self, party: Party, options: NNOptions) -> NNGuestPart | NNHostPart:
        try:
            return self._guest(party, options) if party.role == "guest" else self._host(party, options)
        except Exception as exc:
            party.channel.abort_after(exc, f"hetero_nn {party.role}")
            raise

    def _guest(self, party: Party, options: NNOptions) -> NNGuestPart:
        table, channel = party.labelled_rows(), party.channel
        scaler = _scaler(options, table.features)
        X = _scaled(scaler, table.features)
        task = classifier_task(options.task, table.label, self.name)
        target, classes = encode_labels(task, table.label)
        if classes is not None and len(classes) < 2:
            raise DataError(f"a {task} task needs at least 2 label values, the guest has {classes.tolist()}")
        rng = np.random.default_rng(options.seed)
        order = rng.permutation(table.n_rows)
        n_validation = int(round(options.validation_fraction * table.n_rows))
        validation, train = np.sort(order[:n_validation]), np.sort(order[n_validation:])
        if not len(train):
            raise DataError("the guest has no training rows left after the validation split")
        layers = options.bottom_of(party.name, "guest")
        with seeded(options.seed):
            network = guest_network(options, layers, X.shape[1], outputs(task, len(classes) if classes is not None else 0))
        links = []
        for host in party.roster.with_role("host"):
            d = Inspect(host, tags.SHAPE).integer(channel.recv(host, tags.SHAPE), 1, MAX_BOTTOM_OUTPUT,
                                                  "bottom output width")
            weights = initial_share(rng, d, options.interactive_units)
            if options.protection == "plain":  # the guest holds W_h whole: share and noise alike
                weights = weights + initial_noise(rng, options, d)
            links.append(_guest_link(channel, host, options, d, weights))
        trained = NNGuest(options, task, layers, network, links).fit(channel, X, target, train, validation, party.progress)
        return NNGuestPart(trained, table.feature_names, scaler, classes,
                           validation if len(validation) else np.arange(table.n_rows))

    def _host(self, party: Party, options: NNOptions) -> NNHostPart:
        table, channel, guest = party.rows(), party.channel, party.roster.one("guest")
        scaler = _scaler(options, table.features)
        layers = options.bottom_of(party.name, "host")
        with seeded(options.seed):
            bottom = sequential(layers, table.features.shape[1])
        d = width(layers, table.features.shape[1])
        channel.send(guest, tags.SHAPE, d)
        noise = initial_noise(np.random.default_rng(), options, d) if options.protection == "paillier" else None
        link = HostLink(channel, guest, options, d, noise)
        trained = NNHost(options, layers, bottom, link).fit(channel, _scaled(scaler, table.features))
        return NNHostPart(trained, table.feature_names, scaler)

    def load(self, role: str, model: dict[str, Any]) -> NNGuestPart | NNHostPart:
        options = NNOptions(**model["options"])
        scaler = Standardizer.from_dict(model["scaler"]) if model.get("scaler") else None
        features = list(model["features"])
        if role == "guest":
            task, classes = model["task"], None if model.get("classes") is None else np.asarray(model["classes"])
            layers = _layers(model)
            network = guest_network(options, layers, len(features),
                                    outputs(task, len(classes) if classes is not None else 0))
            load_state(network, model["network"], "hetero_nn guest network")
            links = [_guest_link(None, host, options, len(w), np.asarray(w, dtype=np.float64))
                     for host, w in model["interactive"].items()]
            trained = NNGuest(options, task, layers, network, links)
            trained.history = model.get("history", [])
            return NNGuestPart(trained, features, scaler, classes, np.arange(0))
        if role == "host":
            layers = _layers(model)
            bottom = sequential(layers, len(features))
            load_state(bottom, model["bottom"], "hetero_nn host bottom")
            noise = None if model.get("noise_share") is None else np.asarray(model["noise_share"], dtype=np.float64)
            link = HostLink(None, model["guest"], options, int(model["width"]), noise)
            return NNHostPart(NNHost(options, layers, bottom, link), features, scaler)
        raise ConfigError(f"{self.name} keeps no model at role {role!r}")

    def reference_by_party(self, options: NNOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                           X_eval: np.ndarray, owners: list[str], roster: Roster) -> Reference:
        from isthmus.algorithms.hetero_nn.reference import pooled_reference

        scores = pooled_reference(options, task, X_train, y_train, X_eval, owners, roster)
        return Reference(scores, "PyTorch on pooled columns")

    def local_options(self, options: NNOptions) -> NNOptions:
        return options.model_copy(update={"protection": "plain"})


def _guest_link(channel, host: str, options: NNOptions, d: int, weights: np.ndarray):
    if options.protection == "plain":
        return PlainGuestLink(channel, host, options, d, weights)
    return ProtectedGuestLink(channel, host, options, d, weights)


def _layers(model: dict[str, Any]) -> list:
    """The party's own bottom layer list as its part saved it (checked like a job's)."""
    return check_layers(list(model["layers"]), "saved bottom")


def _scaler(options: NNOptions, X: np.ndarray) -> Standardizer | None:
    return Standardizer.fit(X) if options.scale and X.shape[1] else None


def _scaled(scaler: Standardizer | None, X: np.ndarray) -> np.ndarray:
    return scaler.transform(X) if scaler else np.asarray(X, dtype=np.float64)


register(HeteroNN())
