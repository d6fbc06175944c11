"""Typed options of every step and algorithm, checked when a job loads rather than when a step runs.

Each step and each algorithm declares its options as a subclass of :class:`Options`: names, types,
defaults and bounds in one place (pydantic, strict: ``"5"`` is not 5, ``true`` is not 1). A job file
is parsed into these classes at every party before any step runs, so a misspelt option or a key
size below the minimum is an error naming the party, the step and the option, not a failure after
the intersection has run.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from isthmus.errors import ConfigError


class OptionsError(ConfigError):
    """Options that fail their checks; ``explanation`` says which option and why."""

    def __init__(self, owner: str, explanation: str):
        super().__init__(f"{owner}: {explanation}")
        self.explanation = explanation


class Options(BaseModel):
    """Options of one step or algorithm: unknown names, wrong types and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        """Options built in code (tests, the Python API) are checked like a job file's."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise OptionsError(type(self).__name__, explain(exc, type(self))) from None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, *, where: str) -> Self:
        """The options in ``raw`` (a job file's mapping); every problem is one :class:`ConfigError` naming
        ``where`` (e.g. "party 'guest', step 2 'train' (hetero_lr)") and each offending option."""
        try:
            return cls.model_validate(dict(raw or {}))
        except OptionsError as exc:  # pydantic validates through our __init__
            raise ConfigError(f"{where}: {exc.explanation}") from None
        except ValidationError as exc:
            raise ConfigError(f"{where}: {explain(exc, cls)}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def explain(exc: ValidationError, options: type[BaseModel]) -> str:
    """pydantic's errors as one line: each option's problem, with a suggestion for a misspelt name."""
    known = list(options.model_fields)
    problems = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not name:  # a check across options
            problems.append(message)
        elif error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
            problems.append(f"unknown option {name!r}{hint}")
        else:
            problems.append(f"option {name!r}: {message}" + _got(error))
    return "; ".join(problems)


def _got(error: dict) -> str:
    if error["type"] in ("missing", "extra_forbidden") or "input" not in error:
        return ""
    return f", got {error['input']!r:.60}"
