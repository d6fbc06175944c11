"""Private cross-institution query: "does this applicant already borrow elsewhere?".

Python API: :class:`~isthmus.query.asker.QueryClient` (or :func:`~isthmus.query.control.ask_service`
against a running service) returns a :class:`~isthmus.query.asker.BatchAnswer`. The construction
and its threat model are in docs/query.md and docs/security.md.
"""

from isthmus.query.asker import Answer, BatchAnswer, NoAnswerError, QueryClient
from isthmus.query.config import Policy, QueryConfig, TableFormat, load_config
from isthmus.query.control import ask_service

__all__ = [
    "Answer",
    "BatchAnswer",
    "NoAnswerError",
    "Policy",
    "QueryClient",
    "QueryConfig",
    "TableFormat",
    "ask_service",
    "load_config",
]
