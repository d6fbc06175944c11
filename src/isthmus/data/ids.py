"""Match ids in one canonical text form, so that parties whose tables typed the same id differently still meet.

Private set intersection compares ids bit for bit after hashing, so ``133`` (an int in one table),
``"133"`` and ``" 133 "`` (strings in another) must become the same bytes first. The rules:

- integers (Python or numpy) become their decimal string: ``133`` -> ``"133"``;
- floats that hold a whole number below 2**53 become that integer's decimal string (pandas turns an
  integer id column with a blank cell into floats); other floats are refused: a fractional id is a
  data error, not something to round;
- strings are Unicode NFC-normalised and stripped of surrounding whitespace; nothing else is
  reinterpreted (``"007"`` stays ``"007"`` and does not meet ``7``);
- a column mixing ints and strings is therefore compared as strings; bools, bytes, None, NaN and empty
  strings are refused with a :class:`DataError` naming the party and the row.

Two rows with the same canonical id are a :class:`DataError` by default: which row should the other
parties' rows be aligned with? ``dedupe="first"`` keeps the first row of each id instead.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.errors import DataError

DEDUPE_MODES = ("error", "first")
_EXACT_FLOAT_LIMIT = 2**53


@dataclass(frozen=True)
class CanonicalIds:
    """A party's unique ids in canonical form, each with the row it came from."""

    values: list[str]
    rows: np.ndarray  # int64, rows[i] is the index in the caller's id array of values[i]

    def __len__(self) -> int:
        return len(self.values)


def canonical_ids(ids: Sequence[Any] | np.ndarray, *, party: str, dedupe: str = "error") -> CanonicalIds:
    """Canonicalise a party's id column (see the module docstring); raises DataError naming ``party``."""
    if dedupe not in DEDUPE_MODES:
        raise ValueError(f"dedupe must be one of {DEDUPE_MODES}, not {dedupe!r}")
    first_row: dict[str, int] = {}
    for row, raw in enumerate(_as_python_values(ids)):
        value = canonical_id(raw, party=party, row=row)
        if value in first_row:
            if dedupe == "error":
                raise DataError(
                    f"party {party!r}: id {value!r} appears in rows {first_row[value]} and {row}; "
                    "ids must be unique (or pass dedupe='first')"
                )
            continue
        first_row[value] = row
    return CanonicalIds(values=list(first_row), rows=np.fromiter(first_row.values(), dtype=np.int64, count=len(first_row)))


def canonical_id(raw: Any, *, party: str, row: int) -> str:
    """One id in canonical form; ``party`` and ``row`` only name the culprit in errors."""
    if isinstance(raw, (bool, np.bool_)):
        raise DataError(f"party {party!r}: id in row {row} is a boolean ({raw!r}); ids must be integers or strings")
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    if isinstance(raw, (float, np.floating)):
        if math.isnan(raw):
            raise DataError(f"party {party!r}: id in row {row} is missing")
        if float(raw).is_integer() and abs(raw) < _EXACT_FLOAT_LIMIT:
            return str(int(raw))
        raise DataError(f"party {party!r}: id in row {row} is the float {raw!r}, not a whole number below 2**53")
    if isinstance(raw, str):
        text = unicodedata.normalize("NFC", raw).strip()
        if not text:
            raise DataError(f"party {party!r}: id in row {row} is empty")
        return text
    what = "missing" if raw is None else f"of unsupported type {type(raw).__name__}"
    raise DataError(f"party {party!r}: id in row {row} is {what}")


def _as_python_values(ids: Sequence[Any] | np.ndarray) -> list[Any]:
    """Plain Python scalars; numpy and pandas columns convert in one vectorised step."""
    if hasattr(ids, "to_numpy"):  # pandas Series or Index, whatever its dtype backend
        ids = ids.to_numpy(dtype=object, na_value=None)
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {ids.shape}")
        return ids.tolist()
    return list(ids)
