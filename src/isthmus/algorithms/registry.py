"""Model name -> algorithm: the only place where jobs learn which models exist.

The built-in algorithms register when first asked for (importing them loads their dependencies, e.g.
PyTorch, only when a job uses them). Other packages add theirs without editing isthmus: through the
entry-point group ``isthmus.algorithms`` (each entry a module that calls :func:`register` on import),
or, for a local try-out, by naming such modules in the environment variable ``ISTHMUS_PLUGINS``
(comma-separated). Each party loads its own plugins: code never travels over the wire.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from importlib.metadata import entry_points

from isthmus.algorithms.base import Algorithm
from isthmus.errors import ConfigError

ENTRY_POINTS = "isthmus.algorithms"
PLUGINS_VARIABLE = "ISTHMUS_PLUGINS"
BUILTIN = (
    "isthmus.algorithms.hetero_ftl.algorithm",
    "isthmus.algorithms.hetero_linear.algorithm",
    "isthmus.algorithms.hetero_nn.algorithm",
    "isthmus.algorithms.hetero_secureboost.algorithm",
    "isthmus.algorithms.homo_linear.algorithm",
    "isthmus.algorithms.homo_nn.algorithm",
    "isthmus.algorithms.homo_secureboost.algorithm",
    "isthmus.algorithms.sshe_lr.algorithm",
)

_algorithms: dict[str, Algorithm] = {}
_loaded = False
_loading = threading.Lock()  # parties run as threads in tests and simulations


def register(algorithm: Algorithm) -> Algorithm:
    """Make ``algorithm`` available under its name; a second algorithm of the same name is refused."""
    known = _algorithms.get(algorithm.name)
    if known is not None and type(known) is not type(algorithm):
        raise ConfigError(f"two algorithms are called {algorithm.name!r}: {type(known).__qualname__} and "
                          f"{type(algorithm).__qualname__}")
    _algorithms[algorithm.name] = algorithm
    return algorithm


def algorithm(name: object) -> Algorithm:
    """The algorithm registered as ``name``; a ConfigError naming the known ones otherwise."""
    _load()
    if isinstance(name, str) and name in _algorithms:
        return _algorithms[name]
    close = difflib.get_close_matches(str(name), _algorithms, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint}; models: {', '.join(names())}")


def names() -> list[str]:
    _load()
    return sorted(_algorithms)


def _load() -> None:
    global _loaded
    with _loading:
        if _loaded:
            return
        for module in BUILTIN:
            importlib.import_module(module)
        for entry in entry_points(group=ENTRY_POINTS):
            _import_plugin(entry.value, f"entry point {entry.name!r}")
        for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
            _import_plugin(module, PLUGINS_VARIABLE)
        _loaded = True


def _import_plugin(module: str, source: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import algorithm plugin {module!r} (from {source}): {exc}") from None
