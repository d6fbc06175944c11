"""Standardising a party's own feature columns, locally, before training.

In a vertical job every party holds whole columns, so each column's mean and deviation are local
statistics: scaling per party gives exactly what scaling the joined table would. scikit-learn
fits the statistics; the fitted state is kept as two plain arrays so that it travels in a party's
model file as lists of floats, never as a pickled estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isthmus.errors import DataError


@dataclass(frozen=True)
class Standardizer:
    """Per-column ``(x - mean) / scale``; constant columns get scale 1, missing values (NaN) stay NaN."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardizer:
        """Column means and population standard deviations (ddof=0, as scikit-learn), NaN ignored."""
        features = _as_matrix(features)
        empty = np.flatnonzero(np.isnan(features).all(axis=0))
        if empty.size:
            raise DataError(f"cannot fit a standardiser: column(s) {empty.tolist()} have no values")
        from sklearn.preprocessing import StandardScaler  # ~0.8 s to import: only for parties that scale

        scaler = StandardScaler().fit(features)
        return cls(mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64))

    def transform(self, features: np.ndarray) -> np.ndarray:
        features = _as_matrix(features)
        if features.shape[1] != len(self.mean):
            raise DataError(f"standardiser fitted on {len(self.mean)} columns got {features.shape[1]}")
        return (features - self.mean) / self.scale

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> Standardizer:
        """Rebuild from :meth:`to_dict`'s output, checking it (a model file may be damaged or edited)."""
        try:
            mean = np.asarray(state["mean"], dtype=np.float64)
            scale = np.asarray(state["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a standardiser state: {exc!r}") from None
        if mean.ndim != 1 or mean.shape != scale.shape:
            raise DataError(f"standardiser mean {mean.shape} and scale {scale.shape} must be equal-length lists")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise DataError("standardiser mean and scale must be finite, and scale > 0")
        return cls(mean=mean, scale=scale)


def _as_matrix(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise DataError(f"features must be a 2-D array, got shape {features.shape}")
    return features


@dataclass(frozen=True)
class RankGauss:
    """Each column mapped through its own empirical quantiles onto a standard normal (scikit-learn's
    ``QuantileTransformer``): heavy-tailed columns (credit utilisation, income, days past due) keep
    their order but no longer saturate a network or dominate a linear model, which plain
    standardising lets one outlier do. ``quantiles`` (levels x columns) is the whole fitted state."""

    quantiles: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, levels: int = 1000) -> RankGauss:
        from sklearn.preprocessing import QuantileTransformer

        features = _as_matrix(features)
        fitted = QuantileTransformer(n_quantiles=min(levels, len(features)), subsample=None).fit(features)
        return cls(quantiles=fitted.quantiles_.astype(np.float64))

    def transform(self, features: np.ndarray) -> np.ndarray:
        from sklearn.preprocessing import QuantileTransformer

        features = _as_matrix(features)
        if features.shape[1] != self.quantiles.shape[1]:
            raise DataError(f"quantile transform fitted on {self.quantiles.shape[1]} columns got {features.shape[1]}")
        levels = len(self.quantiles)
        transformer = QuantileTransformer(n_quantiles=levels, output_distribution="normal")
        # the fitted attributes scikit-learn documents, set from the stored state rather than a pickle
        transformer.quantiles_, transformer.references_ = self.quantiles, np.linspace(0, 1, levels)
        transformer.n_features_in_ = self.quantiles.shape[1]
        return transformer.transform(features)

    def to_dict(self) -> dict[str, list]:
        return {"quantiles": self.quantiles.tolist()}
