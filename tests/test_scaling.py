"""The local standardiser: scikit-learn's statistics, NaN kept, and a state that survives JSON; the rank-gauss
transform: scikit-learn's quantiles rebuilt from its stored state, outliers tamed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from isthmus.errors import DataError
from isthmus.ml.scaling import RankGauss, Standardizer


def test_matches_scikit_learn_on_real_columns():
    x = load_breast_cancer().data
    np.testing.assert_allclose(Standardizer.fit(x).transform(x), StandardScaler().fit_transform(x), rtol=1e-12)


def test_constant_columns_become_zero_and_missing_values_stay_missing():
    x = np.array([[1.0, 7.0, np.nan], [3.0, 7.0, 2.0], [5.0, 7.0, 4.0]])
    scaler = Standardizer.fit(x)
    np.testing.assert_allclose(scaler.mean, [3.0, 7.0, 3.0])
    out = scaler.transform(x)
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])
    assert np.isnan(out[0, 2]) and out[1, 2] == pytest.approx(-1.0)


def test_state_round_trips_through_json():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(50, 4))
    scaler = Standardizer.fit(x)
    again = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(again.transform(x), scaler.transform(x))


@pytest.mark.parametrize(
    ("state", "message"),
    [({"mean": [0.0]}, "not a standardiser state"),
     ({"mean": [0.0, 1.0], "scale": [1.0]}, "equal-length"),
     ({"mean": [0.0], "scale": [0.0]}, "scale > 0"),
     ({"mean": ["a"], "scale": [1.0]}, "not a standardiser state")],
)
def test_from_dict_refuses_a_damaged_state(state, message):
    with pytest.raises(DataError, match=message):
        Standardizer.from_dict(state)


def test_refuses_columns_without_values_and_wrong_widths():
    with pytest.raises(DataError, match=r"column\(s\) \[1\] have no values"):
        Standardizer.fit(np.array([[1.0, np.nan], [2.0, np.nan]]))
    with pytest.raises(DataError, match="fitted on 2 columns got 3"):
        Standardizer.fit(np.ones((3, 2))).transform(np.ones((3, 3)))


def test_rank_gauss_is_scikit_learns_quantile_transform_rebuilt_from_its_json_state():
    x = load_breast_cancer().data
    fitted = RankGauss.fit(x[:400], levels=300)
    rebuilt = RankGauss(np.array(json.loads(json.dumps(fitted.to_dict()))["quantiles"]))
    reference = QuantileTransformer(n_quantiles=300, output_distribution="normal", subsample=None).fit(x[:400])
    np.testing.assert_allclose(rebuilt.transform(x[400:]), reference.transform(x[400:]), atol=1e-12)


def test_rank_gauss_keeps_the_order_and_bounds_an_outlier_that_standardising_lets_dominate():
    x = np.r_[np.random.default_rng(0).normal(size=(999, 1)), [[1000.0]]]
    out = RankGauss.fit(x).transform(x)[:, 0]
    assert (np.argsort(out, kind="stable") == np.argsort(x[:, 0], kind="stable")).all()
    assert out.max() < 6 < Standardizer.fit(x).transform(x).max()
    with pytest.raises(DataError, match="fitted on 1 columns got 2"):
        RankGauss.fit(x).transform(np.ones((3, 2)))
