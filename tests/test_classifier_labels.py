"""A vertical classifier given a numeric target: refused at once, naming the regression models.

A 22,026-value label of 30,000 rows made hetero_lr build one-hot targets (5.3 GB of float64) for 37 s, then
fail on a batch-size rule that did not say why."""

from __future__ import annotations

import time

import numpy as np
import pytest

from isthmus.algorithms.base import MAX_CLASSES, Party, Roster, classifier_task
from isthmus.algorithms.registry import algorithm
from isthmus.data.table import PartyTable
from isthmus.errors import DataError
from isthmus.transport.local import LocalHub

ROLES = {"guest": "guest", "host": "host", "arbiter": "arbiter"}


@pytest.mark.parametrize("model", ["hetero_lr", "hetero_lr_sshe", "hetero_secureboost", "hetero_nn"])
def test_a_classifier_refuses_a_numeric_label_before_talking_to_anyone(model, tmp_path):
    rng = np.random.default_rng(0)
    table = PartyTable("guest", np.arange(3000).astype(str), rng.normal(size=(3000, 4)), ["a", "b", "c", "d"],
                       rng.normal(size=3000))
    hub = LocalHub(list(ROLES), audit_dir=tmp_path / "audit")
    party = Party("guest", Roster(ROLES), hub.channel("guest", "job"), table, tmp_path)
    chosen = algorithm(model)
    started = time.monotonic()
    with pytest.raises(DataError, match=f"{model} is a classifier, and the guest's label has 3000 distinct values"):
        chosen.fit(party, chosen.Options())
    assert time.monotonic() - started < 5
    sent = [entry["tag"] for entry in hub.audits["guest"].entries()]
    assert all(tag.endswith("isthmus/abort") for tag in sent), sent  # at most the notice that it stopped


def test_the_labels_make_the_task():
    assert classifier_task("binary", np.array([0.0, 1.0, 1.0]), "m") == "binary"
    assert classifier_task("binary", np.array([0.0, 1.0, 2.0]), "m") == "multiclass"
    assert classifier_task("regression", np.arange(5000.0), "m") == "regression"
    assert classifier_task("multiclass", np.arange(float(MAX_CLASSES)), "m") == "multiclass"
    with pytest.raises(DataError, match="hetero_linr"):
        classifier_task("multiclass", np.arange(MAX_CLASSES + 1.0), "m")
