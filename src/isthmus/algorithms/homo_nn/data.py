"""A party's rows as a PyTorch Dataset: each row reshaped to the network's input, labels typed for the loss.

The rows come from the job's table reader (CSV, Parquet or ``.npz``, see :mod:`isthmus.data.table`),
so ids, labels and bad cells are checked as for every other model; the DataLoader then batches them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.algorithms.homo_nn.network import torch_module
from isthmus.errors import DataError


def check_targets(party: str, label: np.ndarray, task: str, classes: int | None) -> None:
    """Binary labels are 0/1; multiclass labels the class indices 0 .. classes-1."""
    if task == "binary" and not np.isin(label, (0.0, 1.0)).all():
        raise DataError(f"party {party!r}: a binary model needs labels 0 and 1, found {np.unique(label)[:5].tolist()}")
    if task == "multiclass" and not np.isin(label, np.arange(classes)).all():
        bad = np.unique(label[~np.isin(label, np.arange(classes))])[:5].tolist()
        raise DataError(f"party {party!r}: multiclass labels must be class indices 0..{classes - 1}, found {bad}")


def inputs(features: np.ndarray, shape: tuple[int, ...]) -> Any:
    """Rows of a feature matrix as a float32 tensor of examples shaped ``shape``."""
    torch = torch_module()
    return torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32).reshape(len(features), *shape))


def dataset(features: np.ndarray, label: np.ndarray, shape: tuple[int, ...], task: str) -> Any:
    """A ``TensorDataset`` of (input, target) pairs: class indices as int64, other targets as float32."""
    torch = torch_module()
    targets = torch.as_tensor(label.astype(np.int64 if task == "multiclass" else np.float32))
    return torch.utils.data.TensorDataset(inputs(features, shape), targets)
