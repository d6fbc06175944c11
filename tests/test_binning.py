"""Quantile bins, WOE/IV and IV selection in plaintext (isthmus.ml.binning)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from isthmus.errors import ConfigError, DataError
from isthmus.ml.binning import QuantileBinner, select_by_iv, woe_iv, woe_iv_from_counts


def test_few_distinct_values_get_one_bin_each_and_split_points_are_data_values():
    X = np.array([[3.0], [1.0], [2.0], [3.0], [1.0]])
    binner = QuantileBinner(bins=8).fit(X)
    assert binner.split_points_[0].tolist() == [1.0, 2.0]
    assert binner.transform(X)[:, 0].tolist() == [2, 0, 1, 2, 0]


def test_quantile_bins_are_roughly_equal_in_size():
    X = np.random.default_rng(0).standard_normal((10_000, 1))
    binned = QuantileBinner(bins=10).fit_transform(X)
    counts = np.bincount(binned[:, 0])
    assert len(counts) == 10
    assert counts.min() >= 900 and counts.max() <= 1100


def test_missing_values_go_to_their_own_bin():
    X = np.array([[1.0], [np.nan], [2.0], [np.nan]])
    binner = QuantileBinner(bins=4).fit(X)
    assert binner.transform(X)[:, 0].tolist() == [0, 4, 1, 4]
    assert binner.value_bins_.tolist() == [2]


def test_all_missing_column_has_one_value_bin():
    binner = QuantileBinner(bins=4).fit(np.full((3, 1), np.nan))
    assert binner.value_bins_.tolist() == [1]
    assert binner.transform(np.array([[np.nan], [5.0]]))[:, 0].tolist() == [4, 0]


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(2, 200), elements=st.floats(-1e6, 1e6) | st.just(np.nan)),
       st.integers(2, 40))
def test_bin_at_most_b_is_value_at_most_split_point_b(column, bins):
    """What lets a host partition rows by bin in training and by threshold in prediction."""
    binner = QuantileBinner(bins).fit(column[:, None])
    binned = binner.transform(column[:, None])[:, 0]
    present = ~np.isnan(column)
    for b, point in enumerate(binner.split_points_[0]):
        assert np.array_equal(binned[present] <= b, column[present] <= point)
    assert (binned[~present] == binner.missing_bin).all()
    assert binned[present].max(initial=0) < binner.value_bins_[0]


def test_bad_configuration_and_data_are_refused():
    with pytest.raises(ConfigError):
        QuantileBinner(bins=1)
    with pytest.raises(DataError, match="infinite"):
        QuantileBinner().fit(np.array([[np.inf]]))
    binner = QuantileBinner().fit(np.zeros((3, 2)))
    with pytest.raises(DataError, match="2 features"):
        binner.transform(np.zeros((3, 3)))


def test_woe_and_iv_by_hand():
    # one feature, two bins: bin 0 holds 30 events / 10 non-events, bin 1 holds 10 / 50
    result = woe_iv_from_counts(np.array([[30.0, 10.0]]), np.array([[10.0, 50.0]]))
    event_rate, non_event_rate = np.array([0.75, 0.25]), np.array([10 / 60, 50 / 60])
    expected_woe = np.log(event_rate / non_event_rate)
    np.testing.assert_allclose(result.woe[0], expected_woe)
    np.testing.assert_allclose(result.iv, [((event_rate - non_event_rate) * expected_woe).sum()])


def test_zero_counts_are_adjusted_and_empty_bins_ignored():
    result = woe_iv_from_counts(np.array([[5.0, 0.0, 0.0]]), np.array([[5.0, 5.0, 0.0]]))
    assert np.isfinite(result.woe).all()
    np.testing.assert_allclose(result.woe[0, 1], np.log((0.5 / 5) / (5.5 / 10)))
    assert result.woe[0, 2] == 0.0


def test_informative_feature_has_higher_iv():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    X = np.column_stack([y + rng.normal(0, 0.5, 2000), rng.normal(size=2000)])
    binner = QuantileBinner(10).fit(X)
    iv = woe_iv(binner.transform(X), y, binner.bins + 1).iv
    assert iv[0] > 1.0
    assert iv[1] < 0.05


def test_woe_needs_binary_labels_with_both_classes():
    with pytest.raises(DataError):
        woe_iv(np.zeros((3, 1), dtype=np.uint8), np.array([0, 1, 2]), 5)
    with pytest.raises(DataError, match="both"):
        woe_iv(np.zeros((3, 1), dtype=np.uint8), np.array([1, 1, 1]), 5)


def test_select_by_threshold_top_k_and_both():
    iv = np.array([0.5, 0.01, 0.3, 0.3, 0.2])
    assert select_by_iv(iv, threshold=0.25).tolist() == [True, False, True, True, False]
    assert select_by_iv(iv, top_k=2).tolist() == [True, False, True, False, False]
    assert select_by_iv(iv, threshold=0.4, top_k=3).tolist() == [True, False, False, False, False]
    with pytest.raises(ConfigError):
        select_by_iv(iv)
