"""The asking institution: "does this applicant already borrow elsewhere?" for a batch of ids.

1. Blind each id once (``r * H1(id)``) and send the blinded batch to every other institution; each
   answers under its own OPRF key and learns nothing about the ids.
2. Unblind each answer to that institution's pseudonym and pad per id, shuffle every id's
   pseudonyms (in the aggregate mode) so their order says nothing about their origin, encrypt the
   negated pads under this asker's Paillier key, and send all of it to the aggregator.
3. Decrypt the packed sums: per id, the number of other institutions holding an active loan and
   their total exposure. Which institutions answered is part of every answer, never silently partial.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from isthmus.crypto.oprf import Blinding
from isthmus.crypto.paillier import CipherArray, PaillierPrivateKey, generate_keypair
from isthmus.errors import DataError, IsthmusError, PeerError, PeerUnreachableError, ProtocolError
from isthmus.query import protocol
from isthmus.query.config import QueryConfig
from isthmus.query.ids import validated_ids
from isthmus.query.querylog import QueryLog, QueryRecord
from isthmus.query.records import tag_and_pad, total_of
from isthmus.query.sums import encrypt_unpads, open_sums, packed_count
from isthmus.transport.channel import Channel


#: Seconds a query waits for a ping from an institution whose node an earlier query could not reach, before
#: asking it: otherwise every query waits the whole connect timeout (5 s) for it again. A node that is back
#: answers the ping (made over a new connection) and is asked by the same query.
DOWN_PING_S = 0.5


@dataclass(frozen=True)
class Answer:
    id: str
    institutions: int  # other institutions (among those that answered) holding an active loan
    exposure: int  # their total active exposure, in minor units
    per_institution: dict[str, bool] | None = None  # only under policy.mode "per_institution"

    def amount(self, decimals: int) -> Decimal:
        return Decimal(self.exposure).scaleb(-decimals)


@dataclass(frozen=True)
class BatchAnswer:
    answers: list[Answer]
    answered: list[str]  # institutions whose records the answers cover
    unanswered: dict[str, str] = field(default_factory=dict)  # institution -> why it is not covered
    request: str = ""

    @property
    def complete(self) -> bool:
        return not self.unanswered

    def coverage(self) -> str:
        """E.g. ``3 of 4 institutions answered; missing: bank5 (unreachable ...)``."""
        total = len(self.answered) + len(self.unanswered)
        text = f"{len(self.answered)} of {total} institutions answered"
        if self.unanswered:
            text += "; missing: " + _reasons(self.unanswered)
        return text


def _reasons(unanswered: dict[str, str]) -> str:
    """E.g. ``bank2 (unreachable ...); bank5 (...)``."""
    return "; ".join(f"{name} ({why})" for name, why in sorted(unanswered.items()))


class NoAnswerError(IsthmusError):
    """No other institution answered, or (policy.partial_answers: false) one did not: there is nothing to
    report, not even "no loans"."""


class QueryClient:
    def __init__(
        self,
        channel: Channel,
        config: QueryConfig,
        log: QueryLog,
        *,
        private_key: PaillierPrivateKey | None = None,
        workers: int | None = None,
    ):
        config.check_institution(channel.party)
        self.channel = channel
        self.config = config
        self.party = channel.party
        self._log = log
        self._private_key = private_key
        self._workers = workers
        self._digest = config.policy.digest()
        self._unreachable: dict[str, str] = {}  # institution -> why the last query could not reach its node

    @property
    def private_key(self) -> PaillierPrivateKey:
        if self._private_key is None:  # one key per client: generating it costs about a second
            self._private_key = generate_keypair(self.config.policy.paillier_bits)[1]
        return self._private_key

    def ask(self, ids: Sequence[object]) -> BatchAnswer:
        """Answers in the order of ``ids``; DataError for malformed ids or a batch over the limit."""
        canonical = self._check_batch(ids)
        distinct = list(dict.fromkeys(canonical))
        request_id = secrets.token_hex(16)
        blinding = Blinding(self.config.domain, [i.encode() for i in distinct], workers=self._workers)
        others = len(self.config.institutions) - 1
        # Encryption randomness for the pads, drawn while the other institutions compute.
        randomness = threading.Thread(target=self.private_key.public_key.precompute, args=(len(distinct) * others,), daemon=True)
        randomness.start()
        outputs, unanswered = self._evaluate_everywhere(blinding, request_id)
        randomness.join()
        if not outputs:
            self._record(request_id, len(canonical), "failed: no institution answered")
            raise NoAnswerError(f"no other institution answered: {_reasons(unanswered)}")
        if unanswered and not self.config.policy.partial_answers:
            self._record(request_id, len(canonical), "failed: " + ", ".join(sorted(unanswered)) + " did not answer")
            raise NoAnswerError(f"the consortium answers only queries over every other institution "
                                f"(policy.partial_answers: false), and these did not answer: {_reasons(unanswered)}")
        try:
            totals, held, matched = self._aggregate(outputs, len(distinct), request_id)
        except IsthmusError as exc:
            self._record(request_id, len(canonical), f"failed: {type(exc).__name__}")
            raise
        for institution in [name for name in outputs if name not in held]:
            unanswered[institution] = "the aggregator holds no published records of it"
        answered = [name for name in outputs if name in held]
        by_id = {answer.id: answer for answer in _answers(distinct, totals, list(outputs), held, matched)}
        result = BatchAnswer([by_id[c] for c in canonical], answered, unanswered, request_id)
        self._record(request_id, len(canonical), "complete" if result.complete else "partial: " + ", ".join(sorted(unanswered)))
        return result

    def _check_batch(self, ids: Sequence[object]) -> list[str]:
        limit = self.config.policy.max_batch
        if not 1 <= len(ids) <= limit:
            raise DataError(f"a batch must hold 1 to {limit} ids (policy.max_batch), not {len(ids)}")
        return validated_ids(ids, self.config.policy)

    def _evaluate_everywhere(self, blinding: Blinding, request_id: str) -> tuple[dict[str, list[bytes]], dict[str, str]]:
        """Each other institution's OPRF outputs per distinct id, and why the others gave none."""
        others = [name for name in self.config.institutions if name != self.party]
        request = {"rid": request_id, "policy": self._digest, "elements": blinding.blinded}

        def evaluate(institution: str) -> list[bytes] | str:
            down = self._unreachable.get(institution)
            if down is not None and not self.channel.answers(institution, DOWN_PING_S):
                return f"{down} (an earlier query; no answer to a ping since)"
            try:
                reply = protocol.call(self.channel, institution, protocol.EVALUATE, request, self.config.answer_timeout)
                self._unreachable.pop(institution, None)
                reply = protocol.fields(reply, {"ok": bool, "elements": bytes}, peer=institution, tag=protocol.EVALUATE)
                return blinding.finalize(reply["elements"])
            except PeerUnreachableError as exc:
                self._unreachable[institution] = str(exc)
                return str(exc)
            except (PeerError, ProtocolError) as exc:
                return str(exc)
            except ValueError as exc:  # an answer of the wrong length or with invalid elements
                return f"malformed answer: {exc}"

        with ThreadPoolExecutor(max(1, len(others)), thread_name_prefix="query-ask") as pool:
            results = dict(zip(others, pool.map(evaluate, others)))
        outputs = {name: r for name, r in results.items() if isinstance(r, list)}
        return outputs, {name: r for name, r in results.items() if isinstance(r, str)}

    def _aggregate(
        self, outputs: dict[str, list[bytes]], ids: int, request_id: str
    ) -> tuple[list[int], set[str], np.ndarray | None]:
        """Per-id sums from the aggregator, the institutions whose records it holds, and (weaker mode) matches."""
        width = len(outputs)
        columns = list(outputs.values())
        per_institution = self.config.policy.mode == "per_institution"
        shuffle = secrets.SystemRandom().shuffle
        tags, pads = bytearray(), []
        for row in range(ids):
            cells = [tag_and_pad(column[row]) for column in columns]
            if not per_institution:  # the aggregator must not learn which institution a position stands for
                shuffle(cells)
            for tag, pad in cells:
                tags += tag
                pads.append(pad)
        key = self.private_key
        unpads = encrypt_unpads(key.public_key, pads, (ids, width))
        request = {"rid": request_id, "policy": self._digest, "width": width, "tags": bytes(tags), "unpads": unpads}
        aggregator = self.config.aggregator
        reply = protocol.call(self.channel, aggregator, protocol.LOOKUP, request, self.config.answer_timeout)
        expected: dict[str, Any] = {"ok": bool, "sums": CipherArray, "institutions": list}
        if per_institution:
            expected["matched"] = np.ndarray
        reply = protocol.fields(reply, expected, peer=aggregator, tag=protocol.LOOKUP)
        sums: CipherArray = reply["sums"]
        held = reply["institutions"]
        if sums.public_key != key.public_key or sums.shape != (packed_count(key.public_key, ids, width),):
            raise ProtocolError("the sums are not under this asker's key or have the wrong shape", peer=aggregator, tag=protocol.LOOKUP)
        if not all(isinstance(name, str) and name in self.config.institutions for name in held):
            raise ProtocolError("the aggregator named institutions outside the consortium", peer=aggregator, tag=protocol.LOOKUP)
        matched = reply.get("matched")
        if matched is not None and (matched.dtype != np.bool_ or matched.shape != (ids, width)):
            raise ProtocolError(f"'matched' must be a boolean array of shape {(ids, width)}", peer=aggregator, tag=protocol.LOOKUP)
        return open_sums(key, sums, ids, width), set(held), matched

    def _record(self, request_id: str, ids: int, outcome: str) -> None:
        self._log.record(QueryRecord(self.party, "asker", self.party, request_id, ids, outcome))


def _answers(ids: list[str], totals: list[int], columns: list[str], held: set[str], matched: np.ndarray | None) -> list[Answer]:
    """One answer per id; ``matched`` (weaker mode only) has one column per institution in ``columns``."""
    answers = []
    for row, (customer, total) in enumerate(zip(ids, totals, strict=True)):
        count, exposure = total_of(total)
        flags = None
        if matched is not None:
            flags = {name: bool(matched[row, col]) for col, name in enumerate(columns) if name in held}
        answers.append(Answer(customer, count, exposure, flags))
    return answers
