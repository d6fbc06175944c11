"""A long-running responder loop: receive requests under some tags from some members, answer each.

A handler gets ``(sender, message)`` and returns the reply's fields, or raises :class:`Refusal` or
:class:`ProtocolError` (the sender gets ``{"ok": False, "error": ...}``). Any other exception is
logged here and answered with a bare "internal error", so no stack trace or local detail leaves the
party. A message without a usable request id can not be answered; it is logged and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from isthmus.errors import PeerError, PeerTimeoutError, ProtocolError
from isthmus.query.protocol import Refusal, is_request_id, reply_tag
from isthmus.transport.audit import AuditError
from isthmus.transport.channel import Channel

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]
_POLL_SECONDS = 0.2  # how often a waiting loop checks for stop()

_log = logging.getLogger(__name__)


class Service:
    def __init__(self, channel: Channel, *, workers: int = 4):
        self.channel = channel
        channel.keep_open()  # a member's abort notice must not silence the service for everyone
        self._routes: list[tuple[str, list[str], Handler]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"query-{channel.party}")

    def route(self, tag: str, members: Iterable[str], handler: Handler) -> None:
        """Answer requests under ``tag`` from ``members`` with ``handler`` (call before :meth:`start`)."""
        self._routes.append((tag, sorted(members), handler))

    def start(self) -> None:
        for tag, members, handler in self._routes:
            if not members:
                continue
            thread = threading.Thread(target=self._listen, args=(tag, members, handler), name=f"query-{tag}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._pool.shutdown(wait=True)

    def _listen(self, tag: str, members: list[str], handler: Handler) -> None:
        while not self._stop.is_set():
            try:
                sender, message = self.channel.recv_any(members, tag, timeout=_POLL_SECONDS)
            except PeerTimeoutError:
                continue
            except ProtocolError as exc:
                _log.warning("dropped an undecodable request: %s", exc)
                continue
            except AuditError as exc:  # in process, a request is recorded as it is taken: this party's disk is full
                _log.warning("dropped a request it could not record: %s", exc)
                continue
            self._pool.submit(self._answer, tag, sender, message, handler)

    def _answer(self, tag: str, sender: str, message: Any, handler: Handler) -> None:
        rid = message.get("rid") if isinstance(message, dict) else None
        if not is_request_id(rid):
            _log.warning("dropped a request without request id from %s under %s", sender, tag)
            return
        try:
            reply = {"ok": True, **handler(sender, message)}
        except (Refusal, ProtocolError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception:
            _log.exception("handler for %s failed on a request from %s", tag, sender)
            reply = {"ok": False, "error": "internal error"}
        try:
            self.channel.send(sender, reply_tag(tag, rid), reply)
        except (PeerError, AuditError) as exc:  # the latter: this party's disk is full, so the reply was not sent
            _log.warning("could not deliver the reply to %s: %s", sender, exc)
