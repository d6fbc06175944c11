"""Hyper-parameters of gradient-boosted trees, checked once so every role and variant agrees."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field

from isthmus.errors import ConfigError
from isthmus.options import Options

OBJECTIVES = ("binary", "multiclass", "regression")

#: Fewest rows (with gradients) a node of vertical SecureBoost needs for histograms, hence for a split.
#: The guest knows every row's exact (g, h); a bin's sum over m rows is a subset sum whose
#: coefficients carry about b = 52 - log2(rows) + log2(m)/2 bits (gh.py), below ~46 for 500 or more
#: training rows, and is solved for the bin's rows (brute force, meet in the middle, lattice
#: reduction) while m is below b. 64 rows keep every node's histograms above that (docs/security.md).
SAFE_NODE_ROWS = 64


def check_min_node_rows(value: object) -> int:
    if type(value) is not int or value < 1:
        raise ConfigError(f"min_node_rows must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class BoostParams:
    """Names follow XGBoost where they mean the same thing (``reg_lambda``, ``min_child_weight``, ...)."""

    n_trees: int = 10
    max_depth: int = 3
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    min_child_weight: float = 1.0
    min_split_gain: float = 0.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    objective: str = "binary"
    n_classes: int | None = None
    early_stopping_rounds: int | None = None
    validation_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "n_trees must be at least 1": self.n_trees >= 1,
            "max_depth must be in [1, 16]": 1 <= self.max_depth <= 16,
            "learning_rate must be positive": self.learning_rate > 0,
            "reg_lambda must be non-negative": self.reg_lambda >= 0,
            "min_child_weight must be non-negative": self.min_child_weight >= 0,
            "min_split_gain must be non-negative": self.min_split_gain >= 0,
            "subsample must be in (0, 1]": 0 < self.subsample <= 1,
            "colsample_bytree must be in (0, 1]": 0 < self.colsample_bytree <= 1,
            f"objective must be one of {OBJECTIVES}": self.objective in OBJECTIVES,
            "n_classes must be at least 2": self.n_classes is None or self.n_classes >= 2,
            "validation_fraction must be in [0, 0.5]": 0 <= self.validation_fraction <= 0.5,
            "early_stopping_rounds must be at least 1": self.early_stopping_rounds is None or self.early_stopping_rounds >= 1,
            "early stopping needs validation_fraction > 0": self.early_stopping_rounds is None or self.validation_fraction > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ConfigError("; ".join(failed))

    def to_dict(self) -> dict:
        return asdict(self)


class BoostOptions(Options):
    """The `train` options both SecureBoost algorithms share, as a job file writes them."""

    trees: int = Field(10, ge=1)
    max_depth: int = Field(3, ge=1, le=16)
    learning_rate: float = Field(0.3, gt=0)
    reg_lambda: float = Field(1.0, ge=0)
    min_child_weight: float = Field(1.0, ge=0)
    min_split_gain: float = Field(0.0, ge=0)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    objective: Literal[OBJECTIVES] = "binary"  # type: ignore[valid-type]  # binary turns multiclass on 3+ labels
    bins: int = Field(32, ge=2, le=255)
    seed: int = Field(0, ge=0)

    def params(self, **extra: object) -> BoostParams:
        """The core's parameters; ``extra`` sets what only the guest knows (the objective, the classes)."""
        values = {name: value for name, value in self.model_dump().items() if name in BoostParams.__dataclass_fields__}
        return BoostParams(n_trees=self.trees, **{**values, **extra})
