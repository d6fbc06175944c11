"""Reading the YAML files people write (job files, query configurations), with mistakes told on one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from isthmus.errors import ConfigError


def read_yaml(path: Path, what: str) -> Any:
    """The document in ``path``; a missing, unreadable, non-UTF-8 or malformed file is a :class:`ConfigError`
    naming ``what`` (e.g. "job file"), the path, and for bad YAML the line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_problem(exc)}") from None


def _problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and where it is; its own text spans several lines."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
