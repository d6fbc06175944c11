"""Hyper-parameters of hetero linear and logistic regression, shared by guest, hosts and arbiter.

Every party reads the same values from the job file; the guest alone decides batches, epochs and
stopping, and tells the others step by step, so a disagreement in these values cannot desynchronise
the parties.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from isthmus.errors import ConfigError
from isthmus.algorithms.hetero_linear.batches import safe_rows_per_feature

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class LinearConfig:
    task: str = "binary"
    epochs: int = 30
    batch_size: int = 1024  # 0 or less: the whole training set in one batch
    # fewest rows per batch, per feature of the widest party; None: the safe precision + 8 (batches.py)
    batch_rows_per_feature: int | None = None
    learning_rate: float = 0.15
    optimizer: str = "sgd"
    decay: float = 0.0
    penalty: str | None = "l2"  # "l1", "l2" or None
    alpha: float = 0.01
    tol: float = 1e-4  # stop when the epoch loss changes by less than this
    early_stopping_rounds: int = 0  # 0: off; else epochs without validation improvement before stopping
    validation_fraction: float = 0.0  # share of aligned rows the guest holds out for early stopping
    fit_intercept: bool = True
    key_bits: int = 2048
    precision: int = 16  # fractional bits of plaintext features in ciphertext products
    residual: str = "taylor"  # logistic models: "taylor" (white paper) or "sigmoid" (exact; see sigmoid.py)
    encrypt: bool = True  # False only in benchmarks, to measure the cost of encryption
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.penalty not in (None, "l1", "l2"):
            raise ConfigError(f"penalty must be 'l1', 'l2' or none, got {self.penalty!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ConfigError("early_stopping_rounds needs a validation_fraction > 0")
        if self.residual not in ("taylor", "sigmoid"):
            raise ConfigError(f"residual must be 'taylor' or 'sigmoid', got {self.residual!r}")
        if not 4 <= self.precision <= 32:
            raise ConfigError(f"precision must be between 4 and 32 bits, got {self.precision}")
        if self.batch_rows_per_feature is not None and (type(self.batch_rows_per_feature) is not int
                                                        or self.batch_rows_per_feature < 1):
            raise ConfigError(f"batch_rows_per_feature must be a positive integer, got {self.batch_rows_per_feature!r}")

    @property
    def rows_per_feature(self) -> int:
        """Fewest rows a batch needs per feature of the widest party (see batches.py)."""
        if self.batch_rows_per_feature is None:
            return safe_rows_per_feature(self.precision)
        return self.batch_rows_per_feature

    @property
    def unsafe_batches(self) -> bool:
        """True when batches may be small enough for a party to solve its gradient for the labels."""
        return self.rows_per_feature < safe_rows_per_feature(self.precision)

    @property
    def exact_sigmoid(self) -> bool:
        return self.residual == "sigmoid" and self.task != "regression"

    @classmethod
    def from_dict(cls, values: dict) -> LinearConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**values)
