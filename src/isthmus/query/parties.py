"""The two kinds of party of the query service, each running on one transport channel.

Transport-agnostic: the processes of :mod:`isthmus.query.runtime` give them a mutual-TLS gRPC
channel, tests give them an in-process one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from isthmus.crypto.oprf import OprfKey
from isthmus.crypto.paillier import PaillierPrivateKey
from isthmus.errors import PeerTimeoutError
from isthmus.query import protocol
from isthmus.query.aggregator import Aggregator
from isthmus.query.asker import BatchAnswer, QueryClient
from isthmus.query.config import QueryConfig
from isthmus.query.loans import TableChange
from isthmus.query.querylog import QueryLog
from isthmus.query.responder import Publisher, Responder
from isthmus.query.service import Service
from isthmus.transport.channel import Channel

#: Seconds an institution waits for the aggregator to store a snapshot (large tables take a while).
PUBLISH_TIMEOUT = 120.0


class InstitutionParty:
    """A lender: answers other lenders' blinded ids, publishes its records, asks for its own officers."""

    def __init__(
        self,
        channel: Channel,
        config: QueryConfig,
        key: OprfKey,
        log: QueryLog,
        *,
        private_key: PaillierPrivateKey | None = None,
        workers: int | None = None,
    ):
        self.party = channel.party
        self.config = config
        self.responder = Responder(self.party, config, key, log, workers=workers)
        self.publisher = Publisher(channel, self.responder, timeout=max(PUBLISH_TIMEOUT, config.answer_timeout))
        self.client = QueryClient(channel, config, log, private_key=private_key, workers=workers)
        self.service = Service(channel)
        others = [name for name in config.institutions if name != self.party]
        self.service.route(protocol.EVALUATE, others, self.responder.evaluate)
        self.service.route(protocol.HELLO, [config.aggregator], self.publisher.wake)

    def start(self) -> None:
        self.service.start()
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        self.service.stop()

    def load(self, exposures: dict[str, int], *, wait: float | None = None) -> TableChange:
        """Adopt a new table version and publish it; with ``wait``, block until the aggregator holds it."""
        change = self.responder.publish(exposures)
        version = self.responder.version
        self.publisher.wake()
        if wait is not None and not self.publisher.wait_published(version, wait):
            raise PeerTimeoutError(f"records version {version} of {self.party!r} not stored within {wait:g} s",
                                   peer=self.config.aggregator, tag=protocol.PUBLISH)
        return change

    def ask(self, ids: Sequence[object]) -> BatchAnswer:
        return self.client.ask(ids)


class AggregatorParty:
    def __init__(self, channel: Channel, config: QueryConfig, log: QueryLog):
        self.channel = channel
        self.aggregator = Aggregator(config, log)
        self.service = Service(channel)
        self.service.route(protocol.PUBLISH, config.institutions, self.aggregator.store)
        self.service.route(protocol.LOOKUP, config.institutions, self.aggregator.lookup)

    def start(self) -> None:
        self.service.start()
        threading.Thread(target=self.aggregator.greet, args=(self.channel,), name="query-hello", daemon=True).start()

    def stop(self) -> None:
        self.service.stop()
