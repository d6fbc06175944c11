"""The centralised booster `isthmus parity` compares SecureBoost with: XGBoost if installed, else ours.

XGBoost runs ``tree_method=hist`` with the job's trees, depth, learning rate, bins and regularisation;
without it, isthmus's own plaintext booster (:class:`~isthmus.tree.booster.SecureBoostReference`) runs on
all columns at once. Pooling is for local benchmarking only.
"""

from __future__ import annotations

import numpy as np

from isthmus.tree.booster import SecureBoostReference, to_prediction, to_proba
from isthmus.tree.params import BoostOptions


def booster_reference(options: BoostOptions, task: str, X_train: np.ndarray, y_train: np.ndarray,
                      X_eval: np.ndarray) -> tuple[np.ndarray, str]:
    """The scores on ``X_eval`` (P(y=1), class probabilities or values) and the booster's name."""
    labels = np.unique(y_train)
    params = options.params(objective=task, n_classes=len(labels) if task == "multiclass" else None,
                            early_stopping_rounds=None, validation_fraction=0.0)
    y = np.searchsorted(labels, y_train) if task == "multiclass" else y_train
    try:
        import xgboost
    except ImportError:
        reference = SecureBoostReference(bins=options.bins, **params.to_dict()).fit([X_train], y)
        raw = reference.decision_function([X_eval])
        objective = reference.ensemble_.objective
        scores = to_prediction(objective, raw) if task == "regression" else to_proba(objective, raw)
        return scores[:, 1] if task == "binary" else scores, "isthmus SecureBoostReference (xgboost not installed)"
    settings = {"n_estimators": params.n_trees, "max_depth": params.max_depth, "learning_rate": params.learning_rate,
                "max_bin": options.bins, "tree_method": "hist", "reg_lambda": params.reg_lambda,
                "min_child_weight": params.min_child_weight, "gamma": params.min_split_gain,
                "subsample": params.subsample, "colsample_bytree": params.colsample_bytree,
                "random_state": params.seed}
    name = f"xgboost {xgboost.__version__}"
    if task == "regression":
        return xgboost.XGBRegressor(**settings).fit(X_train, y).predict(X_eval), name
    proba = xgboost.XGBClassifier(**settings).fit(X_train, y).predict_proba(X_eval)
    return (proba[:, 1] if task == "binary" else proba), name
