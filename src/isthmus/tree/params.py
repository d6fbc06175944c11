"""Hyper-parameters of gradient-boosted trees, checked once so every role and variant agrees."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from isthmus.errors import ConfigError

OBJECTIVES = ("binary", "multiclass", "regression")


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
