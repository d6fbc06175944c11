"""The consent state machine of one node: proposals in and out, votes, the start, cancellations.

The proposer's node sends the proposal to every other participant; each participant's node reviews it
against its own policy and answers with a vote: a refusal with its reason, or its signature on the
proposal's digest (at once when its policy approves automatically, after ``approve`` otherwise). When
every participant has signed, the proposer's node sends every signature and the job's addresses to
all; each node checks every signature against the pinned keys before it runs its own side. One refusal
and the proposer tells everyone: nothing runs anywhere.
"""

from __future__ import annotations

import difflib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.budget import IdBudget
from isthmus.errors import ConfigError, IsthmusError, PeerError, for_peer
from isthmus.incentive.ledger import ledger_path
from isthmus.jobs.plan import Plan
from isthmus.jobs.spec import shared_address
from isthmus.node.config import NodeConfig
from isthmus.node.consent import consent_valid, sign_consent
from isthmus.node.peers import TAG
from isthmus.node.policy import Refusal, charged_members, review, testable_ids
from isthmus.node.proposal import Proposal, ProposalError, job_document, parse_proposal
from isthmus.node.replicas import LedgerReplicas
from isthmus.node.store import FINAL, Store
from isthmus.protocols.inspect import Inspect
from isthmus.transport.ports import ADDRESS_RULE, is_address

_log = logging.getLogger(__name__)
MAX_REASON = 1000


class Runner(Protocol):
    def address(self, held: set[int]) -> str: ...
    def start(self, job_id: str, document: dict) -> None: ...
    def cancel(self, job_id: str) -> None: ...
    def failure(self, job_id: str) -> str | None: ...


class Coordinator:
    def __init__(self, config: NodeConfig, store: Store, signing_key: Ed25519PrivateKey,
                 pinned: dict[str, Ed25519PublicKey], runner: Runner):
        self.config = config
        self.store = store
        self.signing_key = signing_key
        self.pinned = pinned
        self.runner = runner
        self.send: Callable[[str, dict], object] = lambda peer, message: None  # set by the node once its link is up
        #: whether a member's node answers a ping within the seconds given; set by the node with its link
        self.answers: Callable[[str, float], bool] = lambda peer, timeout: True
        self.serving: Any = None  # the node's Serving, once started
        #: the certificate the node's link presents (None: the one installed, for a coordinator without a link)
        self.certificate: x509.Certificate | None = None
        self._lock = threading.RLock()  # one decision at a time: votes may arrive together
        limit = config.policy.max_peer_ids_per_day
        #: per member, the ids it tested against this node's tables today (policy.max_peer_ids_per_day)
        self.testable = None if limit is None else IdBudget(limit, 24 * 3600)
        self._charge_accepted_again()
        #: message kind -> handler(sender, message, check); serving adds its own
        self.handlers: dict[str, Callable[[str, dict, Inspect], None]] = {
            "propose": self._on_propose, "vote": self._on_vote, "start": self._on_start, "refused": self._on_refused,
            "cancel": self._on_stop, "failed": self._on_stop}
        self.replicas = LedgerReplicas(config.party, list(config.members), ledger_path(config.keys, config.party),
                                       pinned, lambda peer, message: self.send(peer, message))
        self.handlers.update(self.replicas.handlers)

    @property
    def me(self) -> str:
        return self.config.party

    # -- this node's operator -------------------------------------------------------------------------

    def submit(self, body: Any) -> str:
        """Propose ``body`` (a job naming aliases) to its participants; returns the job id."""
        proposal = parse_proposal(body, job_id=secrets.token_hex(8), proposer=self.me,
                                  members=set(self.config.members))
        with self._lock:
            if self.me in proposal.parties:
                self._check_own_alias(proposal)
                review(self.config, proposal)  # a proposer's own policy mistakes are reported at once
            self.store.add_job(proposal.id, proposal.name, self.me, proposal.digest, proposal.to_wire(), "proposed")
            for party in proposal.parties:
                if party != self.me:
                    self.send(party, {"kind": "propose", "job": proposal.id, "proposal": proposal.body})
            if self.me in proposal.parties:
                self._decide(proposal)
        return proposal.id

    def _check_own_alias(self, proposal: Proposal) -> None:
        """The proposer's own alias, with the name it likely meant: its operator may see its catalogue. (A node
        refusing another member's proposal names no alias of its own.)"""
        own, catalogue = proposal.parties[self.me].get("data"), sorted(self.config.options.catalogue)
        if own is not None and own not in catalogue:
            close = difflib.get_close_matches(own, catalogue, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"its tables: {', '.join(catalogue) or 'none'}"
            raise Refusal("alias", f"this node's catalogue has no table {own!r} ({hint})")

    def approve(self, job_id: str) -> None:
        with self._lock:
            job = self._pending(job_id)
            self._accept(proposal_of(job))

    def refuse(self, job_id: str, reason: str) -> None:
        with self._lock:
            job = self._pending(job_id)
            self._vote(proposal_of(job), "refuse", reason=f"refused by {self.me}'s operator: {reason}"[:MAX_REASON])

    def expire_unanswered(self, now: float | None = None) -> None:
        """End what has waited longer than ``policy.answer_within_hours`` for an answer, so that nobody waits
        for ever: a proposal waiting for this node's operator is refused; one still waiting for a vote (at its
        proposer) or for its start (at a member: the proposer's node may be gone for good) is cancelled
        everywhere, naming whom it waited for."""
        hours = self.config.policy.answer_within_hours
        cutoff = (time.time() if now is None else now) - hours * 3600
        with self._lock:
            for job in self.store.with_status("pending"):
                if job["created"] < cutoff:
                    self._vote(proposal_of(job), "refuse", reason=f"{self.me} refuses: answer_within_hours: its "
                                                                  f"operator did not answer within {hours:g} h")
            for job in self.store.with_status("proposed", "accepted"):
                if job["created"] < cutoff:
                    reason = f"expired: {self._waiting_for(job)} within {hours:g} h (answer_within_hours)"
                    self._stop_here(job, "cancelled", f"{self.me}: {reason}")
                    self._tell(job, "cancel", reason)

    def _waiting_for(self, job: dict) -> str:
        """Whom this node waited for: the proposer counts the votes; a member sees only that no start came."""
        if job["proposer"] != self.me:
            return f"{job['proposer']} (the proposer) did not start it"
        silent = sorted(set(proposal_of(job).parties) - set(self.store.votes(job["id"])) - {self.me})
        return f"no answer from {', '.join(silent)}"

    def cancel(self, job_id: str, reason: str = "cancelled by the operator") -> None:
        with self._lock:
            job = self._known(job_id)
            if job["status"] in FINAL:
                raise ConfigError(f"job {job_id} is {job['status']} already")
            self._stop_here(job, "cancelled", f"{self.me}: {reason}")
            self._tell(job, "cancel", reason)

    def tell_failed(self, job_id: str, reason: str) -> None:
        """After a restart or on a clean stop: the job failed here, so its other parties stop too."""
        with self._lock:
            self._tell(self._known(job_id), "failed", reason)

    def undelivered(self, peer: str, message: dict, error: Exception) -> None:
        """``message`` did not reach ``peer``'s node. Without a proposal, a vote or a start the job cannot go
        on, so it fails here naming the peer and its other parties are told, rather than all of them
        waiting for it for ever; a notice that a job ended needs nothing more (the peer's side ends too)."""
        if message.get("kind") not in ("propose", "vote", "start"):
            return
        with self._lock:
            job = self.store.job(message["job"])
            if job is None or job["status"] in FINAL:
                return
            if isinstance(error, PeerError):
                reason = told = f"the node of {peer} could not be reached: {error}"
            else:  # this node's own failure (its audit log cannot be written): the others learn only its kind
                reason = f"this node could not send its {message['kind']} to {peer}: {error}"
                told = f"this node could not send its {message['kind']} to {peer}: {for_peer(error)}"
            self._stop_here(job, "failed", reason[:MAX_REASON])
            self._tell(job, "failed", told[:MAX_REASON])

    def _tell(self, job: dict, kind: str, reason: str) -> None:
        proposal = proposal_of(job)
        for party in {*proposal.parties, proposal.proposer} - {self.me}:
            self.send(party, {"kind": kind, "job": job["id"], "reason": f"{self.me}: {reason}"[:MAX_REASON]})

    def job_done(self, job_id: str, status: str, reason: str | None) -> None:
        """The runner's report: this party's side finished or failed. A failure is told to the job's other
        parties at once: the process may have died without a word (killed, out of memory), and they would
        wait out their timeouts for it. They learn only that it failed here: ``reason`` may quote data."""
        with self._lock:
            job = self.store.job(job_id)
            if job is not None and job["status"] == "running":
                self.store.set_status(job_id, status, reason)
                if status == "failed":
                    self._tell(job, "failed", "its side of the job failed; the details are in its own log")

    # -- messages from the other nodes ----------------------------------------------------------------

    def handle(self, sender: str, message: Any) -> None:
        check = Inspect(sender, TAG)
        check.mapping(message, {"kind", "job"})
        kind = check.text(message["kind"], "kind", 16)
        handler = self.handlers.get(kind)
        if handler is None:
            check.fail(f"unknown message kind {kind!r}")
        check.text(message["job"], "job id", 16)
        with self._lock:
            handler(sender, message, check)

    def _on_propose(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "proposal"}, exact=True)
        if self.store.job(message["job"]) is not None:
            check.fail(f"job {message['job']} is known here already")
        limit = self.config.policy.max_proposals_per_hour
        if self.store.proposed_since(sender, time.time() - 3600) >= limit:
            self.send(sender, {"kind": "vote", "job": message["job"], "decision": "refuse",
                               "reason": f"{self.me} refuses: rate: more than {limit} proposals from {sender} in "
                                         "an hour (policy.max_proposals_per_hour)"})
            return
        try:
            proposal = parse_proposal(message["proposal"], job_id=message["job"], proposer=sender,
                                      members=set(self.config.members))
        except ProposalError as exc:  # too malformed to keep: refused at once, not stored
            self.send(sender, {"kind": "vote", "job": message["job"], "decision": "refuse",
                               "reason": f"{self.me} refuses: {exc.rule}: {exc}"[:MAX_REASON]})
            return
        if self.me not in proposal.parties:
            check.fail("this node is not a party of the proposed job")
        self.store.add_job(proposal.id, proposal.name, sender, proposal.digest, proposal.to_wire(), "proposed")
        self._decide(proposal)

    def _decide(self, proposal: Proposal) -> None:
        try:
            plan = review(self.config, proposal)
        except Refusal as refusal:
            self._vote(proposal, "refuse", reason=f"{self.me} refuses: {refusal}"[:MAX_REASON])
            return
        if self.config.policy.approval == "auto":
            self._accept(proposal, plan)
        else:
            self.store.set_status(proposal.id, "pending", "waiting for the operator: isthmus job approve/refuse")

    def _accept(self, proposal: Proposal, plan: Plan | None = None) -> None:
        """``plan``: this node's review of the proposal, if just made (an operator's approval comes later)."""
        try:
            self._spend_testable_ids(proposal, plan)
            address = self.runner.address(self.store.ports_held(self.me))
        except Refusal as refusal:
            self._vote(proposal, "refuse", reason=f"{self.me} refuses: {refusal}"[:MAX_REASON])
            return
        except ConfigError as exc:
            self._vote(proposal, "refuse", reason=f"{self.me} refuses: ports: {exc}"[:MAX_REASON])
            return
        self._vote(proposal, "accept", signature=sign_consent(self.signing_key, proposal.digest), address=address)

    def _spend_testable_ids(self, proposal: Proposal, plan: Plan | None = None, *,
                            accepted_at: float | None = None) -> None:
        """Charge each other data party of ``proposal`` the ids it may test against this node's table, or refuse
        the job if one has too few left today (policy.max_peer_ids_per_day). The reason names no number: the
        charge is the job's max_peer_ratio times this node's rows, which the proposer must not learn.
        ``accepted_at`` (a monotonic time): a job accepted before, charged again without a check."""
        if self.testable is None:
            return
        cost = testable_ids(self.config, plan or review(self.config, proposal), proposal.alias_of(self.me))
        members = charged_members(proposal, self.me)
        if cost == math.inf:
            raise Refusal("max_peer_ids_per_day", "the intersect step sets no max_peer_ratio, so the ids the other "
                                                  "parties could test against this node's table are not bounded")
        over = [member for member in members if self.testable.left(member) < cost]
        if over and accepted_at is None:
            raise Refusal("max_peer_ids_per_day", f"{', '.join(over)} may test no more ids against this node's "
                                                  "tables today (the job's max_peer_ratio times this node's rows)")
        for member in members:
            self.testable.take(member, cost, now=accepted_at)

    def _charge_accepted_again(self) -> None:
        """Charge the jobs this node accepted in the last 24 hours again: a restart must not renew the budget."""
        if self.testable is None:
            return
        now, monotonic = time.time(), time.monotonic()
        for job in self.store.jobs():  # oldest first, as the budget keeps them
            if job["status"] in _ACCEPTED_HERE and job["created"] > now - 24 * 3600:
                try:
                    self._spend_testable_ids(proposal_of(job), accepted_at=monotonic - (now - job["created"]))
                except IsthmusError:  # its table or this node's policy changed since: nothing to charge it by
                    continue

    def _vote(self, proposal: Proposal, decision: str, *, reason: str | None = None, signature: bytes | None = None,
              address: str | None = None) -> None:
        self.store.set_status(proposal.id, "accepted" if decision == "accept" else "refused", reason)
        if proposal.proposer == self.me:
            self._count(proposal, self.me, decision, reason, signature, address)
        else:
            self.store.vote(proposal.id, self.me, decision, reason, signature, address)
            vote = {"kind": "vote", "job": proposal.id, "decision": decision}
            vote.update({k: v for k, v in (("reason", reason), ("signature", signature), ("address", address)) if v})
            self.send(proposal.proposer, vote)

    def _on_vote(self, sender: str, message: dict, check: Inspect) -> None:
        job = self.store.job(message["job"])
        if job is None or job["proposer"] != self.me:
            check.fail("a vote on a job this node did not propose")
        proposal = proposal_of(job)
        if sender not in proposal.parties:
            check.fail("a vote from a member that is not a party of the job")
        decision = message.get("decision")
        if decision == "accept":
            check.mapping(message, {"kind", "job", "decision", "signature", "address"}, exact=True)
            if not consent_valid(self.pinned[sender], proposal.digest, message["signature"]):
                check.fail("the signature is not the sender's on this proposal's digest")
            _check_address(check, message["address"])
            self._count(proposal, sender, "accept", None, message["signature"], message["address"])
        elif decision == "refuse":
            check.mapping(message, {"kind", "job", "decision", "reason"}, exact=True)
            self._count(proposal, sender, "refuse", check.prose(message["reason"], "reason", MAX_REASON), None, None)
        else:
            check.fail(f"decision must be accept or refuse, got {decision!r:.20}")

    def _count(self, proposal: Proposal, party: str, decision: str, reason: str | None, signature: bytes | None,
               address: str | None) -> None:
        """At the proposer: one vote more; a refusal ends the job everywhere, the last consent starts it."""
        job = self.store.job(proposal.id)
        if job["status"] in FINAL or job["status"] == "running" or party in self.store.votes(proposal.id):
            return
        self.store.vote(proposal.id, party, decision, reason, signature, address)
        others = set(proposal.parties) - {self.me}
        if decision == "refuse":
            self.store.set_status(proposal.id, "refused", reason)
            for peer in others - {party}:
                self.send(peer, {"kind": "refused", "job": proposal.id, "reason": reason})
            return
        votes = self.store.votes(proposal.id)
        if set(proposal.parties) <= {p for p, v in votes.items() if v["decision"] == "accept"}:
            addresses = {p: votes[p]["address"] for p in proposal.parties}
            shared = shared_address(addresses)
            if shared:  # every party would fail to read the job; say why once, here
                reason = (f"{shared[0]} and {shared[1]} chose the same job address {shared[2]}: nodes on one machine "
                          "need job_ports ranges of their own")
                self.store.set_status(proposal.id, "failed", reason)
                self._tell(job, "failed", reason)
                return
            signatures = {p: votes[p]["signature"] for p in proposal.parties}
            for peer in others:
                self.send(peer, {"kind": "start", "job": proposal.id, "addresses": addresses, "signatures": signatures})
            if self.me in proposal.parties:
                self._start(proposal, addresses)
            else:
                self.store.set_status(proposal.id, "finished", "every party accepted and was told to start")

    def _on_start(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "addresses", "signatures"}, exact=True)
        job = self._from_proposer(sender, message, check)
        if job["status"] != "accepted":
            check.fail(f"a start for a job that is {job['status']} here")
        proposal = proposal_of(job)
        addresses, signatures = message["addresses"], message["signatures"]
        for mapping in (addresses, signatures):
            check.mapping(mapping, set(proposal.parties), exact=True)
        for party in proposal.parties:
            if not consent_valid(self.pinned[party], proposal.digest, signatures[party]):
                check.fail(f"no valid consent signature of {party!r}: nothing runs")
            _check_address(check, addresses[party])
        if addresses[self.me] != self.store.votes(proposal.id)[self.me]["address"]:
            check.fail("the start moves this party to another address than the one it chose")
        self._start(proposal, addresses)

    def _start(self, proposal: Proposal, addresses: dict[str, str]) -> None:
        self.store.set_addresses(proposal.id, addresses)
        self.store.set_status(proposal.id, "running")
        try:
            document = job_document(proposal, self.me, self.config.options.catalogue, base=self.config.base,
                                    addresses=addresses)
            self.runner.start(proposal.id, document)
        except IsthmusError as exc:
            self.store.set_status(proposal.id, "failed", str(exc))

    def _on_refused(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "reason"}, exact=True)
        job = self._from_proposer(sender, message, check)
        if job["status"] not in FINAL and job["status"] != "running":
            self.store.set_status(job["id"], "refused", check.prose(message["reason"], "reason", MAX_REASON))

    def _on_stop(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "reason"}, exact=True)
        job = self.store.job(message["job"])
        if job is None:
            check.fail("a cancellation of a job unknown here")
        proposal = proposal_of(job)
        if sender not in {*proposal.parties, proposal.proposer}:
            check.fail("a cancellation from a member that has no part in the job")
        if job["status"] not in FINAL:
            status = "cancelled" if message["kind"] == "cancel" else "failed"
            self._stop_here(job, status, check.prose(message["reason"], "reason", MAX_REASON))

    def _stop_here(self, job: dict, status: str, reason: str) -> None:
        """A peer's word ends the job here, unless this party's side failed first: its own reason is the
        cause then (the guest whose arbiter died read that the host had failed, which its abort had caused)."""
        own = self.runner.failure(job["id"]) if job["status"] == "running" else None
        status, reason = (status, reason) if own is None else ("failed", own)
        self.store.set_status(job["id"], status, reason)  # first: the runner's report must not overwrite it
        if job["status"] == "running":
            self.runner.cancel(job["id"])

    # -- helpers --------------------------------------------------------------------------------------

    def _known(self, job_id: str) -> dict:
        job = self.store.job(job_id)
        if job is None:
            raise ConfigError(f"no job {job_id!r} on node {self.me!r}")
        return job

    def _pending(self, job_id: str) -> dict:
        job = self._known(job_id)
        if job["status"] != "pending":
            raise ConfigError(f"job {job_id} is {job['status']}, not waiting for approval")
        return job

    def _from_proposer(self, sender: str, message: dict, check: Inspect) -> dict:
        job = self.store.job(message["job"])
        if job is None or job["proposer"] != sender:
            check.fail("only the job's proposer may send this")
        return job


#: a job in one of these states was accepted by this node (a failed one, perhaps not: it is charged anyway)
_ACCEPTED_HERE = ("accepted", "running", "finished", "failed")


def proposal_of(job: dict) -> Proposal:
    wire = job["proposal"]
    return Proposal(wire["id"], wire["proposer"], wire["job"])


def _check_address(check: Inspect, address: Any) -> None:
    if not is_address(address):
        check.fail(f"job address must be {ADDRESS_RULE}, got {address!r:.40}")

