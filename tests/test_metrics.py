"""Metrics against hand computations and independent statistics; the written report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from isthmus.errors import ConfigError, DataError
from isthmus.ml.metrics import METRICS, evaluate, gain_lift_by_decile, ks_statistic, write_report

# Four rows worked by hand: ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-).
Y4 = np.array([0, 0, 1, 1])
S4 = np.array([0.1, 0.4, 0.35, 0.8])


def test_binary_metrics_by_hand():
    m = evaluate("binary", Y4, S4)
    assert m["auc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs are ordered right
    assert m["ks"] == pytest.approx(0.5)  # after the top row: TPR 1/2, FPR 0
    # at 0.5 only 0.8 is predicted positive: one true positive, one false negative
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)


def test_threshold_moves_the_label_metrics_only():
    m = evaluate("binary", Y4, S4, threshold=0.3)  # predicts 0.35, 0.4, 0.8 positive
    assert (m["precision"], m["recall"], m["accuracy"]) == pytest.approx((2 / 3, 1.0, 0.75))
    assert m["auc"] == pytest.approx(0.75)


def test_ks_and_auc_agree_with_two_sample_statistics():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    s = 1 / (1 + np.exp(-(y * 1.2 + rng.normal(size=500))))
    pos, neg = s[y == 1], s[y == 0]
    assert ks_statistic(y, s) == pytest.approx(stats.ks_2samp(pos, neg).statistic)
    u = stats.mannwhitneyu(pos, neg).statistic
    assert evaluate("binary", y, s, metrics=["auc"])["auc"] == pytest.approx(u / (len(pos) * len(neg)))


def test_gain_and_lift_by_decile_on_ten_rows():
    # one row per decile; positives at ranks 1, 2 and 4 of 10
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    s = np.linspace(0.95, 0.05, 10)
    table = gain_lift_by_decile(y, s)
    assert table["population"] == pytest.approx([k / 10 for k in range(1, 11)])
    assert table["gain"] == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1, 1, 1, 1])
    assert table["lift"] == pytest.approx([10 / 3, 10 / 3, 20 / 9, 2.5, 2, 5 / 3, 10 / 7, 1.25, 10 / 9, 1])


def test_gain_ranks_by_score_not_by_input_order():
    y = np.array([0] * 18 + [1, 1])
    s = np.r_[np.full(18, 0.2), 0.9, 0.8]
    m = evaluate("binary", y, s, metrics=["gain", "lift"])
    assert m["gain"][0] == 1.0 and m["lift"][0] == pytest.approx(10.0)


def test_gain_with_fewer_rows_than_deciles_never_has_an_empty_bin():
    table = gain_lift_by_decile(np.array([1, 0, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]))
    assert table["population"] == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1, 1])
    assert table["gain"][-1] == 1.0 and table["lift"][-1] == 1.0


def test_regression_by_hand():
    m = evaluate("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m == pytest.approx({"rmse": np.sqrt(4 / 3), "mae": 2 / 3, "r2": -1.0})


def test_multiclass_by_hand():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])  # argmax 0, 2, 2, 2
    m = evaluate("multiclass", y, p)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1 + 0 + 0.8) / 3)  # class 2: precision 2/3, recall 1


def test_results_are_json_ready_and_in_the_requested_order():
    m = evaluate("binary", Y4, S4, metrics=["lift", "auc"])
    assert list(m) == ["lift", "auc"]
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert list(evaluate("binary", Y4, S4)) == list(METRICS["binary"])


def test_unknown_metric_or_task_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown binary metric\(s\) 'gini'; valid: auc, ks, accuracy"):
        evaluate("binary", Y4, S4, metrics=["auc", "gini"])
    with pytest.raises(ConfigError, match=r"unknown regression metric\(s\) 'auc'; valid: rmse, mae, r2"):
        evaluate("regression", [1.0], [1.0], metrics=["auc"])
    with pytest.raises(ConfigError, match="valid tasks: binary, regression, multiclass"):
        evaluate("ranking", Y4, S4)


@pytest.mark.parametrize(
    ("task", "y", "s", "message"),
    [
        ("binary", [0, 2], [0.1, 0.2], "only 0 and 1"),
        ("binary", [0, 1], [0.1, 1.7], r"probabilities in \[0, 1\]"),
        ("binary", [0, 1], [0.1], "2 rows"),
        ("binary", [0, 1], [np.nan, 0.1], "finite"),
        ("binary", [], [], "non-empty"),
        ("multiclass", [0, 3], [[0.5, 0.5], [0.5, 0.5]], "0..1"),
        ("multiclass", [0, 1], [0.5, 0.5], "2 dimension"),
    ],
)
def test_bad_inputs_are_data_errors(task, y, s, message):
    with pytest.raises(DataError, match=message):
        evaluate(task, y, s)


def test_auc_with_one_class_only_says_so():
    with pytest.raises(DataError, match="auc needs both classes"):
        evaluate("binary", [1, 1], [0.2, 0.9], metrics=["auc"])
    assert evaluate("binary", [1, 1], [0.2, 0.9], metrics=["recall"]) == {"recall": 0.5}


def _breast_scores(fate_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A logistic model's in-sample scores on FATE's breast guest table."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from isthmus.data.table import read_table

    table = read_table(fate_data / "breast_hetero_guest.csv", party="guest", id_column="id", label_column="y")
    x = StandardScaler().fit_transform(table.features)
    return table.label, LogisticRegression().fit(x, table.label).predict_proba(x)[:, 1]


def test_write_report_for_a_binary_model(tmp_path, fate_data):
    y, p = _breast_scores(fate_data)
    result = write_report(tmp_path / "run", "binary", y, p, None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"] == result and saved["task"] == "binary" and saved["rows"] == 569
    assert result["auc"] > 0.95 and 0.7 < result["ks"] <= 1
    assert result["gain"][-1] == 1.0 and result["lift"][0] > 1.5  # the top decile is nearly all positives
    for name in ("roc.png", "ks.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000


def test_write_report_for_regression_writes_no_charts(tmp_path):
    result = write_report(tmp_path, "regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0], ["mae"])
    assert result == {"mae": pytest.approx(2 / 3)}
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == result
    assert not list(tmp_path.glob("*.png"))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=2, max_size=60))
def test_gain_and_lift_invariants(rows):
    y, s = (np.array(column) for column in zip(*rows, strict=True))
    assume(y.any())
    table = gain_lift_by_decile(y, s)
    assert np.all(np.diff(table["gain"]) >= 0) and table["gain"][-1] == 1.0
    assert table["lift"][-1] == pytest.approx(1.0)
    assert np.allclose(np.array(table["lift"]) * table["population"], table["gain"])
