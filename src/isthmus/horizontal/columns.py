"""Horizontal clients must hold the same columns in the same order, since each weight means one column."""

from __future__ import annotations

from isthmus.errors import DataError

_SHOWN = 5


def check_same_columns(first: str, agreed: list[str], client: str, names: list[str]) -> None:
    """Raise a DataError saying how ``client``'s columns differ from ``first``'s, and what to do about it: the
    same names in another order are the common case (a file exported with its columns shuffled), and the
    client's `features` list puts them in order without touching the file."""
    if names == agreed:
        return
    if sorted(names) == sorted(agreed):
        at = next(i for i, (a, b) in enumerate(zip(names, agreed, strict=True)) if a != b)
        raise DataError(f"client {client!r} has the columns of {first!r} in another order (at position {at}: "
                        f"{names[at]!r} where {first!r} has {agreed[at]!r}); list them in the order of {first!r} in "
                        f"the data 'features' of {client!r}, or reorder its file")
    lacking, extra = [n for n in agreed if n not in names], [n for n in names if n not in agreed]
    raise DataError(f"client {client!r} has other columns than {first!r} ({len(names)} against {len(agreed)})" + "".join(
        f"; {what} ({', '.join(map(repr, found[:_SHOWN]))}{', ...' if len(found) > _SHOWN else ''})"
        for what, found in ((f"it lacks {len(lacking)} of those of {first!r}", lacking), ("it has others", extra))
        if found))
