"""Hyper-parameters of hetero_lr_sshe. The guest alone decides batches and epochs and tells the host
batch by batch, so the two parties cannot drift apart; the host uses only the step sizes, the penalty
and the key size (each party's own key must have at least ``key_bits``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from isthmus.algorithms.base import KeyBits, Seed
from isthmus.options import Options


class SSHEOptions(Options):
    task: Literal["binary", "multiclass"] = "binary"  # binary turns multiclass when the guest's label has 3+ values
    epochs: int = Field(10, ge=1)
    batch_size: int = 256  # 0 or less: the whole training set in one batch
    learning_rate: float = Field(0.5, gt=0)
    penalty: Literal["l2"] | None = "l2"
    alpha: float = Field(0.01, ge=0)  # minimises mean log-loss + alpha/2 |w|^2 (the intercept is not penalised)
    validation_fraction: float = Field(0.0, ge=0, lt=1)  # share of aligned rows the guest holds out for evaluate
    fit_intercept: bool = True
    scale: bool = True  # standardise each party's columns over the aligned rows
    key_bits: KeyBits = 2048
    precision: int = Field(16, ge=8, le=32)  # fractional bits of plaintext features in ciphertext products
    seed: Seed = 0

    @property
    def softmax(self) -> bool:
        """Multiclass is always one multinomial model (K weight columns per party; the shared linear guest
        asks when it predicts)."""
        return self.task == "multiclass"

    @property
    def l2(self) -> float:
        return self.alpha if self.penalty == "l2" else 0.0
