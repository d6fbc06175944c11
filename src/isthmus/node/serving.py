"""Online serving of a trained vertical model: the guest's node answers predictions for ids, each host's
node serves its part of that model to that model's guest only, over the nodes' mutual-TLS link.

A prediction is one run of the algorithm's own scoring protocol (``GuestPart.predict`` with the hosts'
``HostPart.serve``), on rows the parties look up by id in their current catalogue tables, under a tag
scope of its own. A host answers "unknown id" and nothing more when it lacks one of the ids; it logs
every request with a hash of its ids, never the ids. Published models are in each node's store and are
served again after a restart.

Versions: publishing a name again adds a version and keeps the earlier ones. The guest chooses the
version of each prediction (the one asked for, else its current one: the latest, or the one rolled back
to) and names it to the hosts; a host serves it only if it holds that version itself, published, so a
host's operator who unpublishes a version withdraws it whatever the guest chooses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.algorithms.base import MODEL_FILE, GuestPart, HostPart, Part
from isthmus.algorithms.registry import algorithm
from isthmus.budget import IdBudget
from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError, IsthmusError, PeerAbortedError, PeerError, ProtocolError
from isthmus.files import append_line, json_lines_since
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps.data import missing_policy
from isthmus.node.coordinator import Coordinator, proposal_of
from isthmus.node.peers import TAG
from isthmus.node.proposal import job_for
from isthmus.node.runner import job_folder
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.transport.pipeline import PipelinedChannel, SendQueues

SERVE_SCOPE = "serve/"  # every prediction's messages: serve/<request id>/...
#: A host's word that it will not serve a prediction, and why (the guest's operator reads it).
REFUSED = "refused"
_log = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")
MAX_IDS = 10_000
_ID_LENGTH = 128
MAX_VERSION = 1_000_000
#: Predictions a host's node serves at once (each waits for its guest's orders); more wait their turn.
SERVING_WORKERS = 8
#: Predictions a host's node holds, served or waiting; more are answered "busy", so that a guest sending
#: requests faster than they are served cannot grow the host's queue without bound.
MAX_HELD = 4 * SERVING_WORKERS
#: Predictions a guest's node takes at once, on threads of their own, scoring or waiting for their model;
#: more are answered "busy" at once. With a host down, each waited out the node's timeout in turn on the
#: threads the node's API answers everything with: sixty predictions left it unable to list its jobs.
MAX_PREDICTIONS = 32
#: Seconds a prediction waits for the ping of a host that did not answer the last one, and for a host's node to
#: take a connection at all: more than the transport's 2 s between attempts to reconnect, so that a host
#: that is back is found.
PING_S = 2.5


#: serving-log outcomes of requests whose ids counted against the guest's hourly limit
_LOOKED_UP = ("served", "unknown id", "busy")


class ServingError(IsthmusError):
    """A prediction that cannot be answered; the message names the host when one is at fault."""


class ServingBusy(ServingError):
    """The guest's node has more predictions in progress than it takes, or the model could not start this one
    within the node's timeout (an earlier one still waits for a host): ask again later."""


class UnknownId(ServingError):
    """An id that a party's current table lacks (which party, the guest's operator learns; nothing more)."""


@dataclass
class Served:
    name: str
    version: int
    job: str
    part: Part
    table: PartyTable  # this party's current rows, the model's columns in its order
    index: dict[str, int]  # id -> row
    peers: list[str]  # the guest's hosts, or the host's one guest
    lock: threading.Lock

    def rows(self, ids: list[str]) -> np.ndarray | None:
        try:
            return np.array([self.index[i] for i in ids], dtype=np.int64)
        except KeyError:
            return None


class Serving:
    def __init__(self, coordinator: Coordinator, channel: Channel):
        self.coordinator = coordinator
        self.channel = channel  # the nodes' link; each prediction takes its own scope of it
        self.store = coordinator.store
        self.config = coordinator.config
        self.models: dict[tuple[str, int], Served] = {}
        self._confirmed: dict[tuple[str, int], set[str]] = {}
        self._publishing = threading.Lock()  # one publication at a time: each takes the next version
        #: Each peer's sends in order, peers in parallel, no acknowledgement awaited until an answer is:
        #: a request to two hosts costs one round trip, not two (docs/node.md "Online serving").
        self._queues = SendQueues(f"serve-{self.config.party}")
        self._workers = ThreadPoolExecutor(SERVING_WORKERS, thread_name_prefix=f"serve-{self.config.party}")
        self._held_requests = threading.BoundedSemaphore(MAX_HELD)
        self._predictions = ThreadPoolExecutor(MAX_PREDICTIONS, thread_name_prefix=f"predict-{self.config.party}")
        self._taken = threading.BoundedSemaphore(MAX_PREDICTIONS)
        self._silent: dict[str, float] = {}  # host -> when a prediction last found it silent
        #: A host's publications, loaded one at a time off the node link: (name, version) -> its guest, and
        #: those its guest gave up on while they loaded.
        self._loader = ThreadPoolExecutor(1, thread_name_prefix=f"publish-{self.config.party}")
        self._loading: dict[tuple[str, int], str] = {}
        self._withdrawn: set[tuple[str, int]] = set()
        self._loading_lock = threading.Lock()
        self._ids_per_hour = IdBudget(self.config.policy.max_prediction_ids_per_hour, 3600)
        self._count_logged_lookups()
        coordinator.handlers.update({"publish": self._on_publish, "published": self._on_published,
                                     "predict": self._on_predict, "unpublish": self._on_unpublish})
        for row in self.store.models():
            if row["status"] == "published":
                try:
                    self.models[row["name"], row["version"]] = self._load(row["name"], row["version"], row["job"])
                except IsthmusError as exc:  # e.g. its table moved: the node still starts, the model is off
                    _log.error("published model %s v%d cannot be served again: %s", row["name"], row["version"], exc)

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._predictions.shutdown(wait=False, cancel_futures=True)
        self._queues.close()

    # -- the guest's side ------------------------------------------------------------------------------

    def publish(self, job_id: str, name: str, timeout: float | None = None) -> dict:
        """Load this guest's part of ``job_id`` and have every host of it load theirs, as the next version of
        ``name``, which becomes the current one; earlier versions stay published."""
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise ConfigError(f"model name {name!r}: lower-case letters, digits, '.' and '-' (at most 63)")
        with self._publishing:
            version = self.store.next_version(name)
            served = self._load(name, version, job_id)
            if not isinstance(served.part, GuestPart):
                raise ConfigError(f"job {job_id} left no guest's part of a vertical model at {self.config.party!r}"
                                  + _at_its_guest(served, "publish it"))
            for host in served.peers:  # before the version is spent: a host that is down took the node's timeout
                if not self.channel.answers(host, timeout=PING_S):  # and was blamed on its node's log
                    raise ServingError(f"host {host!r} does not answer a ping: its node is down or unreachable; "
                                       f"nothing was published")
            key = (name, version)
            self._confirmed[key] = set()
            for host in served.peers:
                self.coordinator.send(host, {"kind": "publish", "job": job_id, "name": name, "version": version})
            deadline = time.monotonic() + (timeout or self.config.options.timeout)
            while self._confirmed[key] != set(served.peers) and time.monotonic() < deadline:
                time.sleep(0.05)
            confirmed = self._confirmed.pop(key)
            missing = sorted(set(served.peers) - confirmed)
            if missing:  # the version number is spent: every host drops it again, the late ones as they load it
                self.store.add_version(name, version, job_id, "unpublished")
                for host in served.peers:
                    self.coordinator.send(host, {"kind": "unpublish", "job": job_id, "name": name, "version": version})
                raise ServingError(f"hosts {missing} did not confirm publishing {name!r} version {version} "
                                   "(their node logs say why)")
            self.store.add_version(name, version, job_id)
            self.models[key] = served
        return {"name": name, "version": version, "job": job_id, "hosts": served.peers}

    def rollback(self, name: str, version: int | None = None) -> dict:
        """Serve ``version`` of ``name`` by default (default: the published version before the current one)."""
        current = self._guest_current(name)
        held = sorted(v for n, v in list(self.models) if n == name)
        if version is None:
            earlier = [v for v in held if v < current]
            if not earlier:
                raise ConfigError(f"model {name!r} has no published version before version {current}")
            version = earlier[-1]
        elif version not in held:
            raise ConfigError(f"model {name!r} has no published version {version!r} here (published: {held})")
        self.store.set_current(name, version)
        return {"name": name, "version": version}

    def unpublish(self, name: str, version: int | None = None) -> dict:
        """Stop serving ``version`` of ``name`` (default: every version). At the guest, its hosts are told to
        drop theirs; at a host, the version is withdrawn from its guest."""
        held = sorted(v for n, v in list(self.models) if n == name)
        versions = held if version is None else [version]
        if not held:
            raise ConfigError(f"no published model {name!r} here")
        if version not in (None, *held):
            raise ConfigError(f"model {name!r} has no published version {version!r} here (published: {held})")
        for v in versions:
            served = self.models.pop((name, v))
            self.store.unpublish(name, v)
            if isinstance(served.part, GuestPart):
                for host in served.peers:
                    self.coordinator.send(host, {"kind": "unpublish", "job": served.job, "name": name, "version": v})
        left = [v for v in held if v not in versions]
        if self.store.current(name) in versions:
            self.store.set_current(name, left[-1] if left else None)
        return {"name": name, "unpublished": versions, "current": self.store.current(name)}

    def _guest_current(self, name: str) -> int:
        current = self.store.current(name)
        served = self.models.get((name, current)) if current is not None else None
        if served is None or not isinstance(served.part, GuestPart):
            raise ConfigError(f"no published model {name!r} at this guest" + _at_its_guest(served, "ask for predictions"))
        return current

    def version_of(self, name: str, version: int | None = None) -> int:
        """The version a prediction of ``name`` uses: ``version``, else the current one."""
        return self._guest_current(name) if version is None else version

    def submit(self, name: str, ids: Any, version: int | None = None) -> Future:
        """:meth:`predict` on the node's prediction threads; beyond :data:`MAX_PREDICTIONS` in progress, a
        :class:`ServingBusy` at once."""
        if not self._taken.acquire(blocking=False):
            raise ServingBusy(f"busy: {MAX_PREDICTIONS} predictions are in progress at this node; ask again later")
        try:
            future = self._predictions.submit(self.predict, name, ids, version)
        except BaseException:
            self._taken.release()
            raise
        future.add_done_callback(lambda _: self._taken.release())
        return future

    def predict(self, name: str, ids: Any, version: int | None = None) -> list:
        """Scores of ``ids`` by ``version`` of ``name`` (default: its current version)."""
        version = self.version_of(name, version)
        served = self.models.get((name, version))
        if served is None or not isinstance(served.part, GuestPart):
            raise ConfigError(f"no published model {name!r} version {version!r} at this guest"
                              + _at_its_guest(served, "ask for predictions"))
        ids = _ids(ids)
        rows = served.rows(ids)
        if rows is None:  # the guest's own ids, asked by its own operator: naming them tells no one else anything
            lacking = [i for i in ids if i not in served.index]
            raise UnknownId(f"unknown id: the guest's table has no row for {', '.join(map(repr, lacking[:5]))}"
                            + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""))
        self._check_silent_hosts(served)
        rid = secrets.token_hex(8)
        with self._turn_of(served):  # a part scores one request at a time
            link = self._link(served.peers)
            channel = link.scoped(f"{SERVE_SCOPE}{rid}")
            try:
                for host in served.peers:  # to every host at once, the algorithm's first orders right behind
                    link.send(host, TAG, {"kind": "predict", "job": served.job, "name": name, "version": version,
                                          "rid": rid, "ids": ids})
                scores = served.part.predict(channel, served.table.features[rows], np.arange(len(rows)))
            except PeerError as exc:
                if not isinstance(exc, PeerAbortedError) and exc.peer in served.peers:
                    self._silent[exc.peer] = time.monotonic()
                raise _failure(channel, served.peers, name, exc) from None
            finally:
                served.part.finish(channel)  # queued: the answer need not wait for the hosts' release
                channel.close()  # a late answer must not wait here for ever
                link.detach()
        for host in served.peers:
            self._silent.pop(host, None)
        return np.asarray(scores).tolist()

    @property
    def prediction_timeout(self) -> float:
        return self.config.options.prediction_timeout or self.config.options.timeout

    @contextmanager
    def _turn_of(self, served: Served) -> Iterator[None]:
        """Hold ``served`` for one prediction; busy if an earlier one still holds it after the prediction
        timeout."""
        timeout = self.prediction_timeout
        if not served.lock.acquire(timeout=timeout):
            raise ServingBusy(f"busy: model {served.name!r} version {served.version} was still answering an earlier "
                              f"prediction after {timeout:g} s (is every host of it up?); ask again later")
        try:
            yield
        finally:
            served.lock.release()

    def _check_silent_hosts(self, served: Served) -> None:
        """Fail at once if a host that did not answer an earlier prediction does not answer a ping either:
        with a host's node down, every prediction waited out the node's timeout for it."""
        for host, since in list(self._silent.items()):
            if host in served.peers and not self.channel.answers(host, timeout=PING_S):
                raise ServingError(f"host {host!r} did not answer the prediction for model {served.name!r}: it is "
                                   f"down (no answer to a ping; silent since a prediction {time.monotonic() - since:.0f} "
                                   "s ago)")

    def _on_published(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name", "version"}, exact=True)
        served = (message["name"], message["version"])
        if _is_version(*served) and served in self._confirmed:
            self._confirmed[served].add(sender)

    # -- a host's side ---------------------------------------------------------------------------------

    def _on_publish(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name", "version"}, exact=True)
        name = check.text(message["name"], "model name", 63)
        version = check.integer(message["version"], 1, MAX_VERSION, "model version")
        job = self.store.job(message["job"])
        if job is None or proposal_of(job).parties.get(sender, {}).get("role") != "guest":
            check.fail("only the guest of a job this node ran may publish its model")
        if job["status"] != "finished" or not MODEL_NAME.fullmatch(name) or self.store.next_version(name) > version:
            check.fail(f"cannot publish {name!r} version {version} of a job that is {job['status']} here "
                       "(or a version this node has had already)")
        limit = self.config.policy.max_published_versions
        with self._loading_lock:
            held = sum(isinstance(s.part, HostPart) and s.peers == [sender] for s in list(self.models.values()))
            if held + list(self._loading.values()).count(sender) >= limit:
                check.fail(f"this node holds {limit} published versions for {sender} already, each with a copy of "
                           "its table in memory (policy.max_published_versions): unpublish one first")
            if (name, version) in self._loading:
                check.fail(f"{name!r} version {version} is being published here already")
            self._loading[name, version] = sender
        self._loader.submit(self._publish_here, sender, job["id"], name, version)

    def _publish_here(self, guest: str, job_id: str, name: str, version: int) -> None:
        """Load and hold a host's part for its guest, off the node link: reading a table of millions of rows
        takes seconds, in which the link delivered nothing else to this node (consent, other predictions)."""
        try:
            served: Served | None = self._load(name, version, job_id)
            if not isinstance(served.part, HostPart) or served.peers != [guest]:
                raise ConfigError("this node keeps no host's part of that model for this guest")
        except Exception as exc:  # the guest, unconfirmed, gives up; the reason stays in this node's log
            _log.error("cannot publish %s version %d for %s: %s", name, version, guest, exc)
            served = None
        with self._loading_lock:
            del self._loading[name, version]
            if served is None or (name, version) in self._withdrawn:
                self._withdrawn.discard((name, version))
                return
            self.store.add_version(name, version, job_id)
            self.models[name, version] = served
        self.coordinator.send(guest, {"kind": "published", "job": job_id, "name": name, "version": version})

    def _on_unpublish(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name", "version"}, exact=True)
        with self._loading_lock:
            key = (message["name"], message["version"])
            if _is_version(*key) and self._loading.get(key) == sender:  # given up by the guest while loading
                self._withdrawn.add(key)
                return
        served = self._held(message)
        if served is None or not isinstance(served.part, HostPart) or served.peers != [sender]:
            check.fail("only a model's guest may unpublish a version this host serves it")
        self.models.pop((served.name, served.version))
        self.store.unpublish(served.name, served.version)

    def _held(self, message: dict) -> Served | None:
        """The version a peer's message names, if this node holds it published."""
        name, version = message["name"], message["version"]
        return self.models.get((name, version)) if _is_version(name, version) else None

    def _on_predict(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name", "version", "rid", "ids"}, exact=True)
        rid = check.text(message["rid"], "request id", 16)
        served = self._held(message)
        link = self._link([sender])
        channel = link.scoped(f"{SERVE_SCOPE}{rid}")
        if served is None or not isinstance(served.part, HostPart) or served.peers != [sender]:
            self._log(message, sender, "unknown model")
            self._refuse(link, channel, sender, "unknown model")
            return
        try:
            ids = _ids(message["ids"])
        except ConfigError:
            check.fail("ids must be a list of at most 10,000 short strings")
        refusal = None  # the serving log's outcome; the guest reads it with what to do
        if not self._ids_per_hour.take(sender, len(ids)):  # before the lookup: an unknown id counts too
            refusal = "rate limit"
        elif (rows := served.rows(ids)) is None:
            refusal = "unknown id"
        elif not self._held_requests.acquire(blocking=False):  # released when served
            refusal = "busy"
        self._log(message, sender, refusal or "served")
        if refusal is not None:
            self._refuse(link, channel, sender, self._explained(refusal))
            return
        self._workers.submit(self._serve, served, link, channel, sender, rows)

    @staticmethod
    def _refuse(link: PipelinedChannel, channel: Channel, guest: str, error: str) -> None:
        """Say why, then end the prediction: the guest is already waiting for the algorithm's answer."""
        channel.send(guest, REFUSED, {"error": error})
        channel.abort("refused the prediction")
        channel.close()  # the guest's orders and release of a refused prediction are dropped on arrival
        link.detach()

    def _explained(self, refusal: str) -> str:
        if refusal == "rate limit":
            return (f"rate limit: more than {self.config.policy.max_prediction_ids_per_hour} ids in an hour "
                    "(the host's policy.max_prediction_ids_per_hour)")
        if refusal == "busy":
            return f"busy: {MAX_HELD} predictions are being served or waiting; ask again later"
        return refusal

    def _serve(self, served: Served, link: PipelinedChannel, channel: Channel, guest: str, rows: np.ndarray) -> None:
        try:
            served.part.serve(channel, served.table.features[rows])
        except IsthmusError as exc:
            self._log({"name": served.name, "version": served.version}, guest, f"failed: {type(exc).__name__}")
            channel.abort_after(exc, "serving")  # in this prediction's scope: the guest stops waiting for it
        finally:
            channel.close()
            link.detach()
            self._held_requests.release()

    def _count_logged_lookups(self) -> None:
        """Count again the ids each guest had this host look up in the last hour (its serving log, read from the
        end): a restart must not renew a guest's max_prediction_ids_per_hour."""
        now, monotonic = time.time(), time.monotonic()
        for entry in json_lines_since(self.config.store / "serving.jsonl", now - 3600):
            guest, rows = entry.get("guest"), entry.get("rows")
            if entry.get("outcome") in _LOOKED_UP and isinstance(guest, str) and type(rows) is int:
                self._ids_per_hour.take(guest, rows, now=monotonic - (now - entry["time"]))

    def _log(self, message: dict, sender: str, outcome: str) -> None:
        ids = message.get("ids") if isinstance(message.get("ids"), list) else []
        entry = {"time": time.time(), "model": str(message.get("name"))[:63],
                 "version": message.get("version") if type(message.get("version")) is int else None,
                 "guest": sender, "rows": len(ids),
                 "ids_sha256": hashlib.sha256(json.dumps(ids, default=str).encode()).hexdigest(), "outcome": outcome}
        append_line(self.config.store / "serving.jsonl", (json.dumps(entry) + "\n").encode())

    # -- both ------------------------------------------------------------------------------------------

    def _link(self, peers: list[str]) -> PipelinedChannel:
        """One prediction's link to ``peers``: each receive waits at most the prediction timeout, over gRPC and
        in process alike (a host whose guest went away stops serving it then)."""
        link = PipelinedChannel(self.channel, self._queues, peers)
        link.default_timeout = self.prediction_timeout
        return link

    def _load(self, name: str, version: int, job_id: str) -> Served:
        job = self.store.job(job_id)
        if job is None:
            raise ConfigError(f"no job {job_id!r} at this node")
        proposal = proposal_of(job)
        me = self.config.party
        model_file = job_folder(self.config.store, job_id) / "run" / MODEL_FILE
        if job["status"] != "finished" or not model_file.is_file():
            raise ConfigError(f"job {job_id} left no model here (it is {job['status']})")
        model = json.loads(Path(model_file).read_text(encoding="utf-8"))
        part = algorithm(model["model"]).load(proposal.parties[me]["role"], model)
        spec = job_for(proposal, me, self.config.options.catalogue, base=self.config.base)
        columns = model.get("features") or model.get("feature_names")  # the part's columns, in its order
        table = _table(spec, me)
        table = table.columns(columns) if columns else table
        roles = {party: entry["role"] for party, entry in proposal.parties.items()}
        peers = sorted(p for p, role in roles.items() if role == "host") if isinstance(part, GuestPart) \
            else [p for p, role in roles.items() if role == "guest"]
        index = {str(i): row for row, i in enumerate(table.ids)}
        return Served(name, version, job_id, part, table, index, peers, threading.Lock())


def _is_version(name: Any, version: Any) -> bool:
    """Whether a peer's message names a model version as this node keys them (bool is not a version)."""
    return isinstance(name, str) and type(version) is int


def _failure(channel: Channel, hosts: list[str], name: str, exc: PeerError) -> ServingError:
    """Why a prediction ended at ``exc``: the refusals hosts sent before ending it (ids they lack, their
    limits), else the host whose failure or silence it was."""
    refusals = {}
    for host in hosts:
        try:  # a refusal is read before its host's notice, which came after it (Mailbox.get_any)
            refusal = Inspect(host, REFUSED).mapping(channel.recv(host, REFUSED, timeout=0), {"error"}, exact=True)
        except (PeerError, ProtocolError):  # none (or a malformed one): the host is serving, failed or silent
            continue
        refusals[host] = str(refusal["error"])[:200]
    if refusals:
        kind = UnknownId if set(refusals.values()) == {"unknown id"} else ServingError
        said = "; ".join(f"{host!r}: " + ("its table lacks one of the ids (a host does not say which)"
                                          if why == "unknown id" else why) for host, why in refusals.items())
        return kind(f"hosts refused the prediction: {said}")
    ended = "failed" if isinstance(exc, PeerAbortedError) else "did not answer"
    return ServingError(f"host {exc.peer!r} {ended} the prediction for model {name!r}: {exc}")


def _at_its_guest(served: Served | None, what: str) -> str:
    """A hint for an operator who asked a host's node: a model is published and asked at its guest's node."""
    if served is None or not isinstance(served.part, HostPart):
        return ""
    return f" (this node holds the host's part): {what} at the node of its guest, {served.peers[0]!r}"


def _table(spec: JobSpec, party: str) -> PartyTable:
    data = spec.party(party).data
    if data is None:
        raise ConfigError(f"party {party!r} lends no table to this job: it has nothing to serve")
    return read_table(data.path, party=party, id_column=data.id, label_column=None, feature_columns=data.features,
                      exclude=data.exclude, missing=missing_policy(spec))


def _ids(ids: Any) -> list[str]:
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_IDS or not all(
            isinstance(i, str) and 0 < len(i) <= _ID_LENGTH for i in ids):
        raise ConfigError(f"ids must be a list of 1 to {MAX_IDS} ids (strings of at most {_ID_LENGTH} characters)")
    return ids
