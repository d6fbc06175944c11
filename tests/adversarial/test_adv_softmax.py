"""Softmax hetero_lr against peers that send the wrong number of class columns, and a guest that asks the
arbiter for more than the protocol allows (in-process channel, scripted peers)."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearOptions
from isthmus.algorithms.hetero_linear import tags
from isthmus.algorithms.hetero_linear.disguise import Disguise
from isthmus.transport.local import LocalHub
from test_adv_vertical import HOST_FEATURES, SAFE_ROWS, Scripted

CLASSES = 4
SOFTMAX = LinearOptions(task="multiclass", residual="sigmoid", encrypt=False, epochs=1, batch_size=0)


def test_the_guest_refuses_a_disguised_part_with_too_few_columns():
    """A host sends one score per row (as for a binary model) where the softmax model needs K - 1 gaps."""
    rng = np.random.default_rng(1)
    rows = 3 * SAFE_ROWS
    hub = LocalHub(["guest", "host", "arbiter"])
    X, y = rng.normal(size=(rows, 2)), np.arange(rows) % CLASSES
    guest = Scripted(hub, lambda: HeteroLinearGuest(SOFTMAX).fit(hub.channel("guest"), X, y, hosts=["host"],
                                                                 arbiter="arbiter"))
    Scripted(hub, lambda: HeteroLinearArbiter(SOFTMAX).fit(hub.channel("arbiter"), guest="guest", hosts=["host"]))
    host = hub.channel("host")
    host.recv("arbiter", tags.PUBLIC_KEY)
    host.send("guest", tags.FEATURES, HOST_FEATURES)
    start = host.recv("guest", tags.CONTROL)
    assert (start["models"], start["columns"]) == (1, CLASSES)
    batch = host.recv("guest", tags.CONTROL)
    host.send("guest", tags.PARTIAL, {"disguised": np.zeros(rows), "loss": np.zeros(1)})
    error = guest.refused()
    assert error.peer == "host" and "disguised scores" in str(error)


def scripted_guest_and_honest_host(columns: int = CLASSES, models: int = 1):
    hub = LocalHub(["guest", "host", "arbiter"])
    X = np.random.default_rng(6).normal(size=(400, HOST_FEATURES))
    host = Scripted(hub, lambda: HeteroLinearHost(SOFTMAX).fit(hub.channel("host"), X, guest="guest", arbiter="arbiter"))
    hub.channel("arbiter").send("host", tags.PUBLIC_KEY, None)
    guest = hub.channel("guest")
    guest.recv("host", tags.FEATURES)
    guest.send("host", tags.CONTROL, {"op": "start", "models": models, "columns": columns,
                                      "features": {"guest": 3, "host": HOST_FEATURES}})
    return guest, host


def test_the_host_refuses_a_residual_with_too_few_columns():
    guest, host = scripted_guest_and_honest_host()
    rows = np.arange(SAFE_ROWS)
    guest.send("host", tags.CONTROL, {"op": "batch", "rows": rows, "model": 0, "labels": np.zeros(SAFE_ROWS * CLASSES),
                                      "disguise": Disguise.draw(SAFE_ROWS, CLASSES).picked})
    partial = guest.recv("host", tags.PARTIAL)
    assert partial["disguised"].shape == (SAFE_ROWS * (CLASSES - 1),)  # each row's K - 1 gaps
    guest.send("host", tags.RESIDUAL, {"residual": np.zeros(SAFE_ROWS), "partners": []})
    error = host.refused()
    assert error.peer == "guest" and f"residual ({SAFE_ROWS} rows x {CLASSES} columns)" in str(error)


def test_the_host_refuses_more_weight_columns_than_any_model_has():
    _, host = scripted_guest_and_honest_host(columns=600, models=2)
    error = host.refused()
    assert error.peer == "guest" and "weight columns per model" in str(error)


def softmax_arbiter(columns: int = CLASSES):
    hub = LocalHub(["guest", "host", "arbiter"])
    arbiter = Scripted(hub, lambda: HeteroLinearArbiter(SOFTMAX).fit(hub.channel("arbiter"), guest="guest",
                                                                      hosts=["host"]))
    for party in ("guest", "host"):
        hub.channel(party).recv("arbiter", tags.PUBLIC_KEY)
    guest = hub.channel("guest")
    guest.send("arbiter", tags.ARBITER_CONTROL,
               {"op": "start", "columns": columns, "features": {"guest": 3, "host": HOST_FEATURES}})
    return hub, guest, arbiter


@pytest.mark.parametrize("gaps", [SAFE_ROWS * CLASSES, SAFE_ROWS], ids=["absolute-scores", "too-few"])
def test_the_arbiter_refuses_a_softmax_request_of_the_wrong_width(gaps):
    """K - 1 gaps per row and no more: K values per row would be absolute scores (more than the softmax needs)."""
    _, guest, arbiter = softmax_arbiter()
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "softmax"})
    guest.send("arbiter", tags.SOFTMAX_REQUEST, {"gaps": np.zeros(gaps), "rows": SAFE_ROWS})
    error = arbiter.refused()
    assert error.peer == "guest" and f"expected shape ({SAFE_ROWS * (CLASSES - 1)},)" in str(error)


def test_the_arbiter_refuses_the_softmax_of_a_small_batch():
    """From the logsumexp of a single row the guest would learn about the hosts' partial scores."""
    _, guest, arbiter = softmax_arbiter()
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "softmax"})
    guest.send("arbiter", tags.SOFTMAX_REQUEST, {"gaps": np.zeros(CLASSES - 1), "rows": 1})
    error = arbiter.refused()
    assert error.peer == "guest" and "softmax of a batch of 1 rows" in str(error)


def test_the_arbiter_refuses_a_softmax_for_a_model_of_one_column():
    _, guest, arbiter = softmax_arbiter(columns=1)
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "softmax"})
    assert "unknown arbiter order 'softmax'" in str(arbiter.refused())


def test_the_arbiter_decrypts_a_gradient_column_per_class_and_no_other_length():
    """A host's gradient is its features x K; one column's worth (a binary model's length) is refused."""
    hub, guest, arbiter = softmax_arbiter()
    host = hub.channel("host")
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    host.send("arbiter", tags.MASKED, np.zeros(HOST_FEATURES * CLASSES))
    guest.send("arbiter", tags.MASKED, np.zeros(3 * CLASSES + 1))
    assert len(host.recv("arbiter", tags.UNMASKED_RAW)) == HOST_FEATURES * CLASSES
    guest.recv("arbiter", tags.UNMASKED_RAW)
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    host.send("arbiter", tags.MASKED, np.zeros(HOST_FEATURES))
    error = arbiter.refused()
    assert error.peer == "host" and f"refusing to decrypt {HOST_FEATURES} values" in str(error)


def test_the_host_refuses_a_disguise_mixing_rows():
    """A softmax disguise orders the rows and each row's classes; one taking a class from another row is not one."""
    guest, host = scripted_guest_and_honest_host()
    picked = np.arange(SAFE_ROWS * CLASSES)
    picked[[0, CLASSES]] = picked[[CLASSES, 0]]  # the first class of rows 0 and 1 swapped
    guest.send("host", tags.CONTROL, {"op": "batch", "rows": np.arange(SAFE_ROWS), "model": 0, "disguise": picked})
    error = host.refused()
    assert error.peer == "guest" and "each row's classes" in str(error)
