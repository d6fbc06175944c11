"""The aggregator's per-round checkpoint: arrays in an ``.npz``, everything else in JSON; never pickle.

``checkpoint.json`` names the arrays file and its SHA-256, and is replaced atomically after the arrays
are on disk, so a crash mid-write leaves the previous checkpoint intact and a tampered or truncated
arrays file is refused on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.errors import ConfigError
from isthmus.files import write_whole

INDEX = "checkpoint.json"
FORMAT = 1


@dataclass
class Checkpoint:
    round: int
    parameters: list[np.ndarray]
    strategy_state: dict[str, np.ndarray]
    history: list[dict[str, Any]]


def save_checkpoint(directory: str | Path, strategy: str, checkpoint: Checkpoint) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays_name = f"round-{checkpoint.round:06d}.npz"
    arrays = {f"p{i:04d}": p for i, p in enumerate(checkpoint.parameters)}
    arrays.update({f"s_{key}": value for key, value in checkpoint.strategy_state.items()})
    packed = io.BytesIO()
    np.savez(packed, **arrays)
    arrays_bytes = packed.getvalue()  # one copy, written and hashed
    write_whole(directory / arrays_name, arrays_bytes)
    index = {
        "format": FORMAT,
        "round": checkpoint.round,
        "strategy": strategy,
        "arrays": arrays_name,
        "sha256": hashlib.sha256(arrays_bytes).hexdigest(),
        "history": checkpoint.history,
    }
    write_whole(directory / INDEX, json.dumps(index, indent=1).encode())
    for old in directory.glob("round-*.npz"):
        if old.name != arrays_name:
            old.unlink()
    return directory / INDEX


def load_checkpoint(directory: str | Path, strategy: str) -> Checkpoint | None:
    """The latest checkpoint in ``directory``, or ``None`` if there is none yet."""
    directory = Path(directory)
    if not (directory / INDEX).exists():
        return None
    try:
        index = json.loads((directory / INDEX).read_text(encoding="utf-8"))
        arrays_path = directory / Path(index["arrays"]).name
        raw = arrays_path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"checkpoint in {directory} is unreadable: {exc}") from None
    if index.get("format") != FORMAT or index.get("strategy") != strategy:
        raise ConfigError(f"checkpoint in {directory} is for strategy {index.get('strategy')!r}, not {strategy!r}")
    if hashlib.sha256(raw).hexdigest() != index.get("sha256"):
        raise ConfigError(f"checkpoint arrays {arrays_path} do not match their recorded SHA-256")
    with np.load(arrays_path, allow_pickle=False) as npz:
        parameters = [npz[key] for key in sorted(k for k in npz.files if k.startswith("p"))]
        state = {key[2:]: npz[key] for key in npz.files if key.startswith("s_")}
    return Checkpoint(int(index["round"]), parameters, state, list(index["history"]))
