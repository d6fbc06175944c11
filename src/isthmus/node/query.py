"""The query service inside the node: started with it when node.yaml has a ``query:`` section, stopped with it.

It is the same service as ``isthmus query serve`` (:func:`isthmus.query.runtime.serve`), run in a thread of
the node's process, its table named by a catalogue alias and its state under the node's store
(``STORE/query``), so ``isthmus query ask|refresh|status --state-dir STORE/query`` stay its clients.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from isthmus.node.config import NodeConfig

_log = logging.getLogger(__name__)


@contextmanager
def query_service(config: NodeConfig) -> Iterator[threading.Thread | None]:
    """The running service's thread (``None`` without a ``query:`` section); stopped when the block ends."""
    settings = config.options.query
    if settings is None:
        yield None
        return
    from isthmus.query.config import load_config
    from isthmus.query.runtime import serve

    query = load_config(config.path(settings.config))
    table = config.path(config.options.catalogue[settings.table].path) if settings.table else None
    stop = threading.Event()

    def run() -> None:
        try:
            serve(query, config.party, config.query_state, stop, table=table, listen=settings.listen,
                  refresh_seconds=settings.refresh_seconds)
        except Exception:  # the node goes on serving jobs and models; the operator reads why here
            _log.exception("node %s: the query service stopped", config.party)

    thread = threading.Thread(target=run, name=f"query-{config.party}", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join()
