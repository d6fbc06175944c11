"""Reading one party's table (CSV, Parquet or .npz) into arrays, with errors an operator can act on.

A table has an id column (used only for sample alignment), an optional label column (the guest's)
and feature columns. Every problem is a :class:`DataError` naming the party and the file, because
in a federated job the operator reading it may be at another organisation.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from isthmus.errors import ConfigError, DataError

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
NPZ_SUFFIXES = (".npz",)
MISSING_POLICIES = ("error", "keep")
_MAX_LISTED = 40  # names quoted in one message before "..."

_Fail = Callable[[str], DataError]  # builds a DataError that names the party and the file


@dataclass(frozen=True)
class PartyTable:
    """One party's rows: ids, float64 features (n, d), optional float64 label (n,)."""

    party: str
    ids: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    label: np.ndarray | None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.features.ndim != 2 or self.features.shape != (n, len(self.feature_names)):
            raise ValueError(
                f"party {self.party!r}: features of shape {self.features.shape} do not match "
                f"{n} ids and {len(self.feature_names)} feature names"
            )
        if self.label is not None and self.label.shape != (n,):
            raise ValueError(f"party {self.party!r}: label of shape {self.label.shape} does not match {n} ids")

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    def columns(self, names: list[str]) -> PartyTable:
        """The same rows with exactly the columns ``names``, in that order (e.g. the order a model takes)."""
        missing = [name for name in names if name not in self.feature_names]
        if missing:
            raise DataError(f"party {self.party!r}: the table lacks the model's columns {_quote(missing)}")
        where = [self.feature_names.index(name) for name in names]
        return PartyTable(party=self.party, ids=self.ids, features=np.ascontiguousarray(self.features[:, where]),
                          feature_names=list(names), label=self.label)

    def take(self, positions: np.ndarray) -> PartyTable:
        """Rows at ``positions``, in that order (e.g. the shared rows in the order PSI agreed on).

        Negative positions are refused rather than wrapped around: positions come out of a protocol
        run with other parties, and a wrapped index would silently pick the wrong row.
        """
        positions = np.asarray(positions)
        if positions.ndim != 1 or not (positions.size == 0 or np.issubdtype(positions.dtype, np.integer)):
            raise DataError(
                f"party {self.party!r}: row positions must be a 1-D integer array, "
                f"got dtype {positions.dtype} and shape {positions.shape}"
            )
        if positions.size and (positions.min() < 0 or positions.max() >= self.n_rows):
            raise DataError(
                f"party {self.party!r}: row positions must lie in [0, {self.n_rows}), "
                f"got range [{positions.min()}, {positions.max()}]"
            )
        positions = positions.astype(np.intp, copy=False)
        return PartyTable(
            party=self.party,
            ids=self.ids[positions],
            features=np.ascontiguousarray(self.features[positions]),
            feature_names=list(self.feature_names),
            label=None if self.label is None else self.label[positions],
        )


def read_table(
    path: str | Path,
    *,
    party: str,
    id_column: str,
    label_column: str | None = None,
    feature_columns: list[str] | None = None,
    exclude: list[str] | tuple[str, ...] = (),
    missing: Literal["error", "keep"] = "error",
) -> PartyTable:
    """Read ``path`` for ``party``; the features are every column but id, label and ``exclude`` unless named.

    ``missing="error"`` refuses empty/NaN feature cells; ``missing="keep"`` keeps them as NaN (for
    models that route missing values themselves, e.g. SecureBoost). A missing label is always an
    error: a row without its label cannot be trained or scored. Infinite values are always an error.

    CSV ids are kept as text (an object array of ``str``): a CSV has no types, and reading ``007``
    as the number 7 would make ids that differ in the file collide during alignment. Parquet ids
    keep their stored type (integers as int64, anything else as an object array).
    """
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing={missing!r} is not one of {MISSING_POLICIES}")
    reader, selected, fail = open_columns(path, party=party, id_column=id_column, label_column=label_column,
                                          feature_columns=feature_columns, exclude=exclude)
    frame = reader.read(selected)
    if len(frame) == 0:
        raise fail("the table has no rows")

    ids = id_array(frame[id_column], id_column, fail)
    features = checked_matrix(frame, selected.features, "features", allow_nan=(missing == "keep"), fail=fail)
    label = None
    if label_column is not None:
        label = checked_label(frame, label_column, fail)
    return PartyTable(party=party, ids=ids, features=features, feature_names=selected.features, label=label)


def count_rows(path: str | Path, *, party: str, id_column: str) -> int:
    """How many rows ``path`` holds, reading only its id column (a node checks its ``max_rows`` with it)."""
    reader, fail = open_reader(path, party)
    selected = select_columns(reader.columns(), id_column, None, [], [], fail)
    return len(reader.read(selected))


def open_columns(path: str | Path, *, party: str, id_column: str, label_column: str | None = None,
                 feature_columns: list[str] | None = None, exclude: list[str] | tuple[str, ...] = ()):
    """The reader of ``path``, the columns a table takes from it and the error maker; from the header only,
    with :func:`read_table`'s checks (no duplicate header cell, every named column present)."""
    reader, fail = open_reader(path, party)
    columns = reader.columns()
    check_duplicates(columns, fail)
    return reader, select_columns(columns, id_column, label_column, feature_columns, list(exclude), fail), fail


def open_reader(path: str | Path, party: str):
    """The reader of ``path`` and the error maker naming party and file, for every message about it."""
    path = Path(path)

    def fail(message: str) -> DataError:
        return DataError(f"party {party!r}, file {str(path)!r}: {message}")

    if not path.is_file():
        raise fail("no such file")
    return reader_for(path, fail), fail


@dataclass(frozen=True)
class _Selection:
    id_column: str
    columns: list[str]  # every column to read, in file order
    features: list[str]


def select_columns(
    columns: list[str],
    id_column: str,
    label_column: str | None,
    feature_columns: list[str] | None,
    exclude: list[str],
    fail: _Fail,
) -> _Selection:
    def require(names: list[str], role: str) -> None:
        absent = [name for name in names if name not in columns]
        if absent:
            separator = next((mark for mark in (";", "\t", "|") if len(columns) == 1 and mark in columns[0]), None)
            hint = f" (one column: is the file separated by {separator!r}? isthmus reads commas)" if separator else ""
            close = {name: match for name in absent if (match := _close_column(name, columns))}
            meant = ", ".join(f"{match!r}" + (f" for {name!r}" if len(absent) > 1 else "")
                              for name, match in close.items())
            meant = f" (did you mean {meant}?)" if meant else ""
            raise fail(f"{role} {_quote(absent)} not found{meant}; the file has columns {_quote(columns)}{hint}")

    require([id_column], "id column")
    if label_column is not None:
        require([label_column], "label column")
    require(exclude, "excluded column(s)")
    reserved = {id_column, label_column}
    if feature_columns is None:
        features = [c for c in columns if c not in reserved and c not in exclude]
    else:
        require(feature_columns, "feature column(s)")
        clash = [c for c in feature_columns if c in reserved]
        if clash:
            raise ConfigError(f"feature column(s) {_quote(clash)} also named as the id or label column")
        features = list(feature_columns)
    wanted = set(features) | {c for c in reserved if c is not None}
    return _Selection(id_column=id_column, columns=[c for c in columns if c in wanted], features=features)


class _CsvReader:
    def __init__(self, path: Path, fail: _Fail) -> None:
        self.path, self.fail = path, fail

    def columns(self) -> list[str]:
        # pandas renames duplicate header cells ("x" -> "x.1"); read the raw header row to see them.
        try:
            header = pd.read_csv(self.path, header=None, nrows=1, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise self.fail("the file is empty (no header row)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise self.fail(f"cannot be read as CSV: {exc}") from None
        return [str(name) for name in header.iloc[0]]

    def read(self, selection: _Selection) -> pd.DataFrame:
        try:
            return pd.read_csv(self.path, usecols=selection.columns, dtype={selection.id_column: str})
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            raise self.fail(f"cannot be read as CSV: {exc}") from None


class _ParquetReader:
    def __init__(self, path: Path, fail: _Fail) -> None:
        self.path, self.fail = path, fail

    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(self.path).names)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
            raise self.fail(f"cannot be read as Parquet: {exc}") from None

    def read(self, selection: _Selection) -> pd.DataFrame:
        try:
            return pd.read_parquet(self.path, columns=selection.columns, engine="pyarrow")
        except Exception as exc:
            raise self.fail(f"cannot be read as Parquet: {exc}") from None


class _NpzReader:
    """A numpy ``.npz`` archive as a table: each 1-D array is a column, each array of more dimensions
    (images: ``(n, 1, 8, 8)``) becomes the columns ``<name>_0 .. <name>_<k-1>`` of its rows flattened.

    Loaded with ``allow_pickle=False``: an archive of object arrays is refused, never unpickled.
    """

    def __init__(self, path: Path, fail: _Fail) -> None:
        self.path, self.fail = path, fail

    def _arrays(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except Exception as exc:  # zipfile, ValueError (object arrays), OSError ...
            raise self.fail(f"cannot be read as .npz: {exc}") from None
        rows = {len(a) if a.ndim else -1 for a in arrays.values()}
        if len(rows) != 1 or -1 in rows:
            raise self.fail(f"its arrays must all have one row per example; lengths {sorted(rows)}")
        return arrays

    def columns(self) -> list[str]:
        columns = []
        for name, array in self._arrays().items():
            width = int(np.prod(array.shape[1:]))
            columns.extend([name] if array.ndim == 1 else [f"{name}_{i}" for i in range(width)])
        return columns

    def read(self, selection: _Selection) -> pd.DataFrame:
        parts = []
        for name, array in self._arrays().items():
            if array.ndim == 1:
                parts.append(pd.DataFrame({name: array.astype(str) if name == selection.id_column else array}))
            else:
                flat = array.reshape(len(array), -1)
                parts.append(pd.DataFrame(flat, columns=[f"{name}_{i}" for i in range(flat.shape[1])]))
        return pd.concat(parts, axis=1)[selection.columns]


def reader_for(path: Path, fail: _Fail) -> _CsvReader | _ParquetReader | _NpzReader:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return _CsvReader(path, fail)
    if name.endswith(PARQUET_SUFFIXES):
        if importlib.util.find_spec("pyarrow") is None:
            raise fail("reading Parquet needs pyarrow: pip install 'isthmus[parquet]'")
        return _ParquetReader(path, fail)
    if name.endswith(NPZ_SUFFIXES):
        return _NpzReader(path, fail)
    raise fail(f"unknown table format; the name must end with one of {CSV_SUFFIXES + PARQUET_SUFFIXES + NPZ_SUFFIXES}")


def check_duplicates(columns: list[str], fail: _Fail) -> None:
    duplicated = sorted(name for name, count in Counter(columns).items() if count > 1)
    if duplicated:
        raise fail(f"duplicate column name(s) {_quote(duplicated)}")


def id_array(column: pd.Series, name: str, fail: _Fail) -> np.ndarray:
    """The id column as int64 (integer ids) or an object array (text), refusing empty cells."""
    absent = int(column.isna().sum())
    if absent:
        raise fail(f"id column {name!r} has {absent} empty cell(s)")
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    return column.to_numpy(dtype=object)


#: Label words read as numbers (any case, spaces around ignored): a bank's default flag is often written Y/N.
#: Each is the number the larger-is-positive rule of two labels gives it, so yes is the positive class.
LABEL_WORDS = {"y": 1, "yes": 1, "true": 1, "t": 1, "n": 0, "no": 0, "false": 0, "f": 0}


def checked_label(frame: pd.DataFrame, name: str, fail: _Fail) -> np.ndarray:
    """Column ``name`` of ``frame`` as float64 labels: numbers, or words of :data:`LABEL_WORDS`, every cell
    present. Each cell is read alone, so every chunk of a streamed table reads alike."""
    column = frame[name]
    if not pd.api.types.is_numeric_dtype(column.dtype):
        column = column.map(lambda cell: LABEL_WORDS.get(cell.strip().lower(), cell) if isinstance(cell, str) else cell)
    return checked_matrix(pd.DataFrame({name: column}), [name], "label", allow_nan=False, fail=fail,
                          not_numeric="; a label is a number, or yes/no in words (Y/N, yes/no, true/false, T/F)")[:, 0]


def checked_matrix(frame: pd.DataFrame, names: list[str], what: str, *, allow_nan: bool, fail: _Fail,
                   not_numeric: str = "") -> np.ndarray:
    """Columns ``names`` of ``frame`` as float64, every cell numeric and finite (NaN only if ``allow_nan``):
    the checks of :func:`read_table`, also run on each chunk of a streamed table. ``not_numeric`` ends the
    error of a cell that is not a number (what else the columns may hold)."""
    values = _numeric_matrix(frame, names, fail, not_numeric)
    _check_finite(values, names, what, allow_nan=allow_nan, fail=fail)
    return values


def _numeric_matrix(frame: pd.DataFrame, names: list[str], fail: _Fail, not_numeric: str) -> np.ndarray:
    """Columns ``names`` as one C-contiguous float64 matrix; a non-numeric cell is named with an example."""
    out = np.empty((len(frame), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column.dtype):  # bool counts as numeric (0/1)
            parsed = pd.to_numeric(column, errors="coerce")
            bad = parsed.isna() & column.notna()
            if bad.any():
                raise fail(
                    f"column {name!r} is not numeric: {int(bad.sum())} cell(s) such as "
                    f"{column[bad].iloc[0]!r} (data row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}){not_numeric}"
                )
            column = parsed
        out[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _check_finite(values: np.ndarray, names: list[str], what: str, *, allow_nan: bool, fail: _Fail) -> None:
    """Refuse infinite cells always, and missing (NaN) cells unless ``allow_nan``; count them per column."""
    checks = [("infinite", np.isinf, "")]
    if not allow_nan:
        hint = ("; fill them, or train a model that routes missing values itself (SecureBoost; in Python, read "
                "with missing='keep')") if what == "features" else ""
        checks.append(("missing (empty or NaN)", np.isnan, hint))
    for kind, test, hint in checks:
        counts = test(values).sum(axis=0)
        if counts.any():
            listed = [f"{names[j]!r} ({int(counts[j])} cell(s))" for j in np.flatnonzero(counts)]
            raise fail(f"{kind} values in {what}: {_join(listed)}{hint}")


def _close_column(name: str, columns: list[str]) -> str | None:
    """The column a misspelt name likely meant: the same but for case, else a near spelling."""
    same = [column for column in columns if column.casefold() == name.casefold()]
    return (same or difflib.get_close_matches(name, columns, n=1, cutoff=0.8) or [None])[0]


def _quote(names: list[str]) -> str:
    return _join([repr(name) for name in names])


def _join(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")
