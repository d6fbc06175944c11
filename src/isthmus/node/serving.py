"""Online serving of a trained vertical model: the guest's node answers predictions for ids, each host's
node serves its part of that model to that model's guest only, over the nodes' mutual-TLS link.

A prediction is one run of the algorithm's own scoring protocol (``GuestPart.predict`` with the hosts'
``HostPart.serve``), on rows the parties look up by id in their current catalogue tables, under a tag
scope of its own. A host answers "unknown id" and nothing more when it lacks one of the ids; it logs
every request with a hash of its ids, never the ids. Published models are in each node's store and are
served again after a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.algorithms.base import MODEL_FILE, GuestPart, HostPart, Part
from isthmus.algorithms.registry import algorithm
from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError, IsthmusError, PeerError
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
_log = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")
MAX_IDS = 10_000
_ID_LENGTH = 128
#: Predictions a host's node serves at once (each waits for its guest's orders); more wait their turn.
SERVING_WORKERS = 8


class ServingError(IsthmusError):
    """A prediction that cannot be answered; the message names the host when one is at fault."""


class UnknownId(ServingError):
    """An id that a party's current table lacks (which party, the guest's operator learns; nothing more)."""


@dataclass
class Served:
    name: str
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
        self.models: dict[str, Served] = {}
        self._confirmed: dict[str, set[str]] = {}
        self._log_lock = threading.Lock()
        #: Each peer's sends in order, peers in parallel, no acknowledgement awaited until an answer is:
        #: a request to two hosts costs one round trip, not two (docs/node.md "Online serving").
        self._queues = SendQueues(f"serve-{self.config.party}")
        self._workers = ThreadPoolExecutor(SERVING_WORKERS, thread_name_prefix=f"serve-{self.config.party}")
        coordinator.handlers.update({"publish": self._on_publish, "published": self._on_published,
                                     "predict": self._on_predict})
        for row in self.store.models():
            if row["status"] == "published":
                try:
                    self.models[row["name"]] = self._load(row["name"], row["job"])
                except IsthmusError as exc:  # e.g. its table moved: the node still starts, the model is off
                    _log.error("published model %s cannot be served again: %s", row["name"], exc)

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._queues.close()

    # -- the guest's side ------------------------------------------------------------------------------

    def publish(self, job_id: str, name: str, timeout: float | None = None) -> dict:
        """Load this guest's part of ``job_id`` and have every host of it load theirs, under ``name``."""
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise ConfigError(f"model name {name!r}: lower-case letters, digits, '.' and '-' (at most 63)")
        if name in self.models:
            raise ConfigError(f"a model named {name!r} is published already")
        served = self._load(name, job_id)
        if not isinstance(served.part, GuestPart):
            raise ConfigError(f"job {job_id} left no guest's part of a vertical model at {self.config.party!r}")
        self._confirmed[name] = set()
        for host in served.peers:
            self.coordinator.send(host, {"kind": "publish", "job": job_id, "name": name})
        deadline = time.monotonic() + (timeout or self.config.options.timeout)
        while self._confirmed[name] != set(served.peers) and time.monotonic() < deadline:
            time.sleep(0.05)
        missing = sorted(set(served.peers) - self._confirmed.pop(name))
        if missing:
            raise ServingError(f"hosts {missing} did not confirm publishing {name!r} (their node logs say why)")
        self.store.add_model(name, job_id, "published")
        self.models[name] = served
        return {"name": name, "job": job_id, "hosts": served.peers}

    def predict(self, name: str, ids: Any) -> list:
        served = self.models.get(name)
        if served is None or not isinstance(served.part, GuestPart):
            raise ConfigError(f"no published model {name!r} at this guest")
        ids = _ids(ids)
        rows = served.rows(ids)
        if rows is None:
            raise UnknownId("unknown id: the guest's table lacks one of the ids")
        rid = secrets.token_hex(8)
        with served.lock:  # a part scores one request at a time
            link = PipelinedChannel(self.channel, self._queues, served.peers)
            channel = link.scoped(f"{SERVE_SCOPE}{rid}")
            try:
                for host in served.peers:  # to every host at once; each host's failure is raised by its recv
                    link.send(host, TAG, {"kind": "predict", "job": served.job, "name": name, "rid": rid, "ids": ids})
                refusals: dict[str, str] = {}
                for host in served.peers:
                    try:
                        ready = channel.recv(host, "ready", timeout=self.config.options.timeout)
                    except PeerError as exc:
                        raise ServingError(f"host {host!r} did not answer for model {name!r}: {exc}") from None
                    if Inspect(host, "ready").mapping(ready, {"ok"}).get("ok") is not True:
                        refusals[host] = str(ready.get("error"))[:200]
                try:
                    if refusals:
                        kind = UnknownId if set(refusals.values()) == {"unknown id"} else ServingError
                        raise kind(f"hosts refused the prediction: {refusals}")
                    scores = served.part.predict(channel, served.table.features[rows], np.arange(len(rows)))
                finally:
                    served.part.finish(channel)  # queued: the answer need not wait for the hosts' release
            finally:
                link.detach()
        return np.asarray(scores).tolist()

    def _on_published(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name"}, exact=True)
        if message["name"] in self._confirmed:
            self._confirmed[message["name"]].add(sender)

    # -- a host's side ---------------------------------------------------------------------------------

    def _on_publish(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name"}, exact=True)
        name = check.text(message["name"], "model name", 63)
        job = self.store.job(message["job"])
        if job is None or proposal_of(job).parties.get(sender, {}).get("role") != "guest":
            check.fail("only the guest of a job this node ran may publish its model")
        if job["status"] != "finished" or not MODEL_NAME.fullmatch(name) or name in self.models:
            check.fail(f"cannot publish {name!r} of a job that is {job['status']} here")
        served = self._load(name, job["id"])
        if not isinstance(served.part, HostPart) or served.peers != [sender]:
            check.fail("this node keeps no host's part of that model for this guest")
        self.store.add_model(name, job["id"], "published")
        self.models[name] = served
        self.coordinator.send(sender, {"kind": "published", "job": job["id"], "name": name})

    def _on_predict(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "name", "rid", "ids"}, exact=True)
        rid = check.text(message["rid"], "request id", 16)
        served = self.models.get(message["name"]) if isinstance(message["name"], str) else None
        link = PipelinedChannel(self.channel, self._queues, [sender])
        channel = link.scoped(f"{SERVE_SCOPE}{rid}")
        if served is None or not isinstance(served.part, HostPart) or served.peers != [sender]:
            self._log(message, sender, "unknown model")
            channel.send(sender, "ready", {"ok": False, "error": "unknown model"})
            link.detach()
            return
        try:
            ids = _ids(message["ids"])
        except ConfigError:
            check.fail("ids must be a list of at most 10,000 short strings")
        rows = served.rows(ids)
        self._log(message, sender, "unknown id" if rows is None else "served")
        if rows is None:
            channel.send(sender, "ready", {"ok": False, "error": "unknown id"})
            link.detach()
            return
        self._workers.submit(self._serve, served, link, channel, sender, rows)

    def _serve(self, served: Served, link: PipelinedChannel, channel: Channel, guest: str, rows: np.ndarray) -> None:
        try:
            channel.send(guest, "ready", {"ok": True})
            served.part.serve(channel, served.table.features[rows])
        except IsthmusError as exc:
            self._log({"name": served.name}, guest, f"failed: {type(exc).__name__}")
        finally:
            link.detach()

    def _log(self, message: dict, sender: str, outcome: str) -> None:
        ids = message.get("ids") if isinstance(message.get("ids"), list) else []
        entry = {"time": time.time(), "model": str(message.get("name"))[:63], "guest": sender, "rows": len(ids),
                 "ids_sha256": hashlib.sha256(json.dumps(ids, default=str).encode()).hexdigest(), "outcome": outcome}
        with self._log_lock, open(self.config.store / "serving.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    # -- both ------------------------------------------------------------------------------------------

    def _load(self, name: str, job_id: str) -> Served:
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
        return Served(name, job_id, part, table, index, peers, threading.Lock())


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
