"""Reading the project's YAML files (jobs, query configurations) strictly, with errors naming the line.

PyYAML's ``safe_load`` still expands aliases (``*a``), so a few hundred bytes of nested aliases
(a "billion laughs") take minutes and all memory; and it keeps the last of two equal keys, so a
job file with ``data:`` twice silently uses the second. Neither has a use in a hand-written file:
anchors, aliases and duplicate keys are refused, and nesting is bounded, all while composing,
before anything is built.
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import Any

import yaml

from isthmus.errors import ConfigError

#: Deepest nesting of mappings and lists a file may have (a job file needs about 5).
MAX_DEPTH = 32


class _Refused(yaml.MarkedYAMLError):
    """What the strict loader refuses; the mark tells the line."""


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` without anchors, aliases, duplicate keys, or nesting beyond :data:`MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem=f"anchors and aliases (&{event.anchor}, *{event.anchor}) are not allowed; "
                                   "write the value out", problem_mark=event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the base class refuses it with its own error
                break
            if earlier is not key_node.start_mark:
                raise _Refused(problem=f"key {key!r:.80} appears twice (first on line {earlier.line + 1})",
                               problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# PyYAML follows YAML 1.1, where a float needs a dot: ``1e-4`` would be the string "1e-4" and then fail
# the option's type check. People writing job files mean the number, as YAML 1.2 reads it.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml(text: str, *, source: str) -> Any:
    """The document in ``text``; any problem is a :class:`ConfigError` naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{source}{where}: {problem or 'not valid YAML'}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None


def load_yaml(path: str | Path, *, what: str) -> Any:
    """Read ``path`` (``what`` names the kind of file in errors, e.g. "job file")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return parse_yaml(text, source=f"{what} {path}")
