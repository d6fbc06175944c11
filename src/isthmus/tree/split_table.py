"""A party's own split rules, keyed by split id: the part of a tree model that never leaves the party.

Other parties know a split only as (party, split id). The owner resolves an id to a feature, the bin
it splits after (for partitioning training rows) and the threshold (for routing new rows); both
agree because a value's bin is at most ``b`` exactly when the value is at most split point ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SplitTable:
    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)

    def add(self, feature: int, bin_: int, threshold: float, default_left: bool) -> int:
        self.feature.append(int(feature))
        self.bin.append(int(bin_))
        self.threshold.append(float(threshold))
        self.default_left.append(bool(default_left))
        return len(self.feature) - 1

    def __len__(self) -> int:
        return len(self.feature)

    def partition(self, split_id: int, binned_column: np.ndarray, missing_bin: int) -> np.ndarray:
        """Which training rows (given their bins of the split's feature) go left."""
        missing = binned_column == missing_bin
        return np.where(missing, self.default_left[split_id], binned_column <= self.bin[split_id])

    def go_left(self, X: np.ndarray, split_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Directions of (row, split) pairs on raw values: ``x <= threshold``, NaN by the default."""
        features = np.asarray(self.feature, dtype=np.int64)[split_ids]
        values = X[rows, features]
        thresholds = np.asarray(self.threshold, dtype=np.float64)[split_ids]
        defaults = np.asarray(self.default_left, dtype=bool)[split_ids]
        return np.where(np.isnan(values), defaults, values <= thresholds)

    def known(self, split_ids: np.ndarray) -> bool:
        """Whether every id names a split of this table (ids dropped by :meth:`to_dict` do not)."""
        if split_ids.size == 0:
            return True
        if split_ids.min() < 0 or split_ids.max() >= len(self):
            return False
        return bool((np.asarray(self.feature)[split_ids] >= 0).all())

    def to_dict(self, keep: set[int] | None = None, feature_names: list[str] | None = None) -> dict[str, dict]:
        """JSON-ready ``{split_id: {feature, bin, threshold, default_left}}`` of the ``keep`` ids (default all)."""
        ids = range(len(self)) if keep is None else sorted(keep)
        return {
            str(i): {
                "feature": self.feature[i],
                **({"feature_name": feature_names[self.feature[i]]} if feature_names else {}),
                "bin": self.bin[i],
                "threshold": self.threshold[i],
                "default_left": self.default_left[i],
            }
            for i in ids
            if self.feature[i] >= 0
        }

    @classmethod
    def from_dict(cls, d: dict[str, dict]) -> SplitTable:
        """Inverse of :meth:`to_dict`; ids left out come back as unknown (feature -1)."""
        rules = {int(key): rule for key, rule in d.items()}
        if rules and min(rules) < 0:
            raise ValueError("split ids must be non-negative")
        table = cls()
        for split_id in range(max(rules, default=-1) + 1):
            rule = rules.get(split_id)
            if rule is None:
                table.add(-1, -1, float("nan"), False)
            else:
                table.add(rule["feature"], rule["bin"], rule["threshold"], rule["default_left"])
        return table
