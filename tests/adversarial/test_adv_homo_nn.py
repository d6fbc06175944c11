"""Hostile clients in a homo_nn job, in process: the honest parties are the job's own code.

A client that sends non-finite or misshapen parameters is left out of that round, named; one that
sends huge finite updates is outvoted by the coordinate-wise median (secure aggregation off); under
secure aggregation one that skips its update_clip makes the mean update too long, and the round is
not applied; a client's garbage instead of its parameter shapes stops the job before round 1, named.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import run_parties

from isthmus.algorithms.homo_linear.client import FEATURES_TAG
from isthmus.algorithms.homo_nn.client import SHAPES_TAG
from isthmus.demos.nn_horizontal import digits_job, make_digits_data
from isthmus.horizontal import participant
from isthmus.horizontal.participant import REQUEST_TAG, reply_tag
from isthmus.horizontal.torch_model import TorchClient
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import load_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub

pytest.importorskip("torch")

HOSTILE = "client-3"
MLP = {"layers": [16, "relu"]}
TRAIN = {"network": MLP, "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "local_epochs": 3, "rounds": 5}


def _job(tmp_path: Path, **train):
    files, pooled_test = make_digits_data(tmp_path / "data", clients=3, alpha=1000.0, held_out=300)
    return load_job(digits_job(tmp_path / "job.yaml", [(t, None) for t, _ in files], pooled_test, name="adv",
                               train={**TRAIN, **train}))


def _run(spec, run: Path, hostile=None) -> dict:
    """Every party as a thread over one hub; ``hostile(channel)`` replaces client-3's code when given."""
    hub = LocalHub(spec.parties)
    certs = run / "certs"
    create_federation(certs, sorted(spec.parties))
    roles = {p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), run / p, certs_dir=certs))
             for p in spec.parties}
    if hostile:
        roles[HOSTILE] = lambda: hostile(hub.channel(HOSTILE, spec.name).scoped("0-train"))
    run_parties(roles, timeout=90)
    return json.loads((run / "aggregator" / "model.json").read_text())


def _raw_client(answer):
    """A client that speaks the protocol by hand: ``answer(round, parameters)`` is its fit reply's parameters."""
    def serve(channel):
        channel.send("aggregator", FEATURES_TAG, [f"image_{i}" for i in range(64)])
        channel.send("aggregator", SHAPES_TAG, [[16, 64], [16], [10, 16], [10]])
        while (request := channel.recv("aggregator", REQUEST_TAG))["op"] != "stop":
            if request["op"] == "fit":
                channel.send("aggregator", reply_tag("fit", request["round"]),
                             {"parameters": answer(request["round"], request["parameters"]),
                              "num_examples": 10**6, "metrics": {}})
    return serve


def test_non_finite_and_misshapen_updates_are_left_out_and_huge_ones_outvoted_by_the_median(tmp_path):
    def answer(server_round, parameters):
        if server_round == 1:
            return [np.full_like(p, np.nan) for p in parameters]
        if server_round == 2:
            return [p[..., :1] for p in parameters]
        return [p + 1e4 for p in parameters]  # finite, accepted, and with a huge claimed weight

    history = _run(_job(tmp_path, secure_aggregation=False, robust="median", task="multiclass", classes=10),
                   tmp_path / "run", _raw_client(answer))["history"]
    rejected = [history[r]["left_out"].get(HOSTILE, "") for r in (0, 1)]
    assert "update rejected" in rejected[0] and "NaN" in rejected[0] and "peer='client-3'" in rejected[0]
    assert "expected shape" in rejected[1] and "peer='client-3'" in rejected[1]
    assert all(HOSTILE in h["clients"] for h in history[2:])
    assert history[-1]["central_metrics"]["accuracy"] > 0.85  # the median ignored the 1e4 shifts


def test_a_client_skipping_its_update_clip_under_secure_aggregation_has_its_rounds_refused(tmp_path, monkeypatch):
    honest_fit, honest_clip = TorchClient.fit, participant.clip_l2

    def fit(self, parameters, config):  # client-3: honest training, then a huge push
        result = honest_fit(self, parameters, config)
        if threading.current_thread().name != HOSTILE or config["round"] < 3:
            return result
        return result._replace(parameters=[p + 10.0 for p in result.parameters])

    def clip(vector, norm):  # ... and it does not clip
        return vector if threading.current_thread().name == HOSTILE else honest_clip(vector, norm)

    monkeypatch.setattr(TorchClient, "fit", fit)
    monkeypatch.setattr(participant, "clip_l2", clip)
    history = _run(_job(tmp_path, update_clip=10.0, task="multiclass", classes=10), tmp_path / "run")["history"]
    assert [bool(h["refused"]) for h in history] == [False, False, True, True, True]
    assert "exceeds update_clip 10" in history[2]["refused"]
    assert history[-1]["central_metrics"] == history[1]["central_metrics"]  # rounds 3-5 left the model alone


def test_garbage_instead_of_parameter_shapes_stops_the_job_naming_the_client(tmp_path):
    def garbage(channel):
        channel.send("aggregator", FEATURES_TAG, [f"image_{i}" for i in range(64)])
        channel.send("aggregator", SHAPES_TAG, [["sixteen"]])

    with pytest.raises(AssertionError, match=r"parameter shapes.*peer='client-3'"):
        _run(_job(tmp_path, secure_aggregation=False, task="multiclass", classes=10), tmp_path / "run", garbage)



def test_a_job_whose_client_fn_is_not_a_client_builder_is_refused_at_the_client(tmp_path):
    """A job file chooses the function each client imports and calls with its context: one that is not
    callable, is not installed here, or returns no Client fails at the client before it sends anything."""
    from isthmus.algorithms.homo_nn.client import user_client
    from isthmus.errors import ConfigError
    from isthmus.horizontal import ClientContext

    context = ClientContext("client-1", 0, 2)
    with pytest.raises(ConfigError, match=r"client_fn 'os:sep' is not callable"):
        user_client("os:sep", context)
    with pytest.raises(ConfigError, match=r"client_fn 'not_installed_here:f' cannot be imported here"):
        user_client("not_installed_here:f", context)
    with pytest.raises(ConfigError, match=r"client_fn 'builtins:repr' returned a str, not an isthmus.horizontal.Client"):
        user_client("builtins:repr", context)
