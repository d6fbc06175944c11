"""Customer ids in one canonical form, so that the asker's id and a lender's id hash alike.

Canonical form: the text with surrounding white space removed, Unicode NFC. Ids are compared
exactly after that (no case folding: the consortium fixes its format, optionally enforced with
``policy.id_pattern``). A malformed id is a :class:`DataError` that gives its position, never the
id itself, since error messages end up in logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from isthmus.errors import DataError
from isthmus.query.config import Policy

_LISTED = 5  # positions quoted in one message


def canonical_id(value: object) -> str:
    """The canonical text of one id (ints as decimal digits); no validation."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"an id must be text or an integer, not {type(value).__name__}")
    return unicodedata.normalize("NFC", str(value).strip())


def id_problem(canonical: str, policy: Policy, pattern: re.Pattern[str] | None) -> str | None:
    """Why ``canonical`` is not a valid id under ``policy``, or None."""
    if not canonical:
        return "empty"
    if len(canonical) > policy.id_max_length:
        return f"longer than {policy.id_max_length} characters"
    if not canonical.isprintable() or any(ch.isspace() for ch in canonical):
        return "contains white space or control characters"
    if pattern is not None and not pattern.fullmatch(canonical):
        return f"does not match policy.id_pattern {policy.id_pattern!r}"
    return None


def validated_ids(values: Iterable[object], policy: Policy, *, what: str = "id") -> list[str]:
    """Canonical ids, or a DataError listing the positions (1-based) of the first malformed ones."""
    pattern = re.compile(policy.id_pattern) if policy.id_pattern else None
    ids, problems = [], []
    for position, value in enumerate(values, start=1):
        try:
            canonical = canonical_id(value)
            problem = id_problem(canonical, policy, pattern)
        except DataError as exc:
            canonical, problem = "", str(exc)
        if problem:
            problems.append(f"{what} {position}: {problem}")
        ids.append(canonical)
    if problems:
        more = f" (and {len(problems) - _LISTED} more)" if len(problems) > _LISTED else ""
        raise DataError(f"malformed ids: {'; '.join(problems[:_LISTED])}{more}")
    return ids
