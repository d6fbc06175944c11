"""Hyper-parameters of vertical linear and logistic regression, shared by guest, hosts and arbiter.

Every party reads the same values from the job file; the guest alone decides batches, epochs and
stopping, and tells the others step by step, so a disagreement in these values cannot desynchronise
the parties.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from isthmus.algorithms.base import KeyBits, Seed, Task
from isthmus.algorithms.hetero_linear.batches import safe_rows_per_feature
from isthmus.ml.optim import OPTIMIZERS
from isthmus.options import Options


class LinearOptions(Options):
    task: Task = "binary"
    epochs: int = Field(30, ge=1)
    batch_size: int = 1024  # 0 or less: the whole training set in one batch
    #: Fewest rows per batch, per feature of the widest party; None: the safe precision + 8 (batches.py).
    batch_rows_per_feature: int | None = Field(None, ge=1)
    learning_rate: float = Field(0.15, gt=0)
    optimizer: Literal[tuple(OPTIMIZERS)] = "sgd"  # type: ignore[valid-type]
    decay: float = Field(0.0, ge=0)
    penalty: Literal["l1", "l2"] | None = "l2"
    alpha: float = Field(0.01, ge=0)
    tol: float = Field(1e-4, ge=0)  # stop when the epoch loss changes by less than this
    early_stopping_rounds: int = Field(0, ge=0)  # 0: off; else epochs without validation improvement
    validation_fraction: float = Field(0.0, ge=0, lt=1)  # share of aligned rows the guest holds out
    fit_intercept: bool = True
    scale: bool = True  # standardise each party's columns over the aligned rows
    key_bits: KeyBits = 2048
    precision: int = Field(16, ge=4, le=32)  # fractional bits of plaintext features in ciphertext products
    #: logistic: exact, the sigmoid (sigmoid.py), for multiclass the softmax of one multinomial model
    #: (softmax.py); or the white paper's Taylor approximation (one-vs-rest for multiclass). Default: the
    #: exact one, except with ckks (whose gradients have no packed sigmoid exchange): see _default_residual
    residual: Literal["taylor", "sigmoid"] = "sigmoid"
    encrypt: bool = True  # False only in benchmarks, to measure the cost of encryption
    #: paillier (key_bits), or ckks: lattice-based, 128-bit-secure fixed parameters, ~25x less CPU for
    #: X.T @ [[d]] (benchmarks/lattice.py); needs the extra isthmus[lattice] (crypto/ckks.py, docs/security.md)
    cipher: Literal["paillier", "ckks"] = "paillier"
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _default_residual(cls, data: object) -> object:
        """Unless the job names one: the exact residual, or with ckks the only one it has."""
        if isinstance(data, dict) and "residual" not in data and data.get("cipher") == "ckks":
            return {**data, "residual": "taylor"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ValueError("early_stopping_rounds needs a validation_fraction > 0")
        if self.cipher == "ckks" and self.exact_sigmoid:
            raise ValueError("residual: sigmoid needs cipher: paillier (its packed sigmoid exchange is Paillier's)")
        return self

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

    @property
    def softmax(self) -> bool:
        """Multiclass as one multinomial model (K weight columns per party) rather than K one-vs-rest models."""
        return self.exact_sigmoid and self.task == "multiclass"
