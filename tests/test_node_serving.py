"""Model versions through the nodes' serving protocol, in process (every node's coordinator and serving over
the in-process hub): publishing again keeps earlier versions, the guest chooses the version, rollback and
unpublish, and a host serves only versions it holds itself. Scores are checked exactly against the model."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit

from isthmus.algorithms.base import MODEL_FILE
from isthmus.errors import ConfigError, DataError
from isthmus.node.peers import CONTROL_JOB
from isthmus.node.proposal import parse_proposal
from isthmus.node.runner import job_folder
from isthmus.node.serving import MAX_PREDICTIONS, Serving, ServingBusy, ServingError, UnknownId
from isthmus.node.store import Store
from tests.node_helpers import federation, local_nodes, proposal

GUEST_COLUMNS, HOST_COLUMNS = ["mean_radius", "mean_texture"], ["radius_error", "texture_error"]


def finished_job(nodes, job_id: str, coef: dict[str, list[float]]) -> None:
    """A finished hetero_lr job at the guest and the host, with the given weights (the guest's last one its
    intercept), as the runner would leave it."""
    members = set(nodes.coordinators)
    body = parse_proposal(proposal(), job_id=job_id, proposer="host", members=members)
    parts = {"guest": {"role": "guest", "features": GUEST_COLUMNS, "classes": [0, 1], "hosts": ["host"]},
             "host": {"role": "host", "features": HOST_COLUMNS, "guest": "guest"}}
    for party, part in parts.items():
        coordinator = nodes.coordinators[party]
        coordinator.store.add_job(job_id, "credit", "host", body.digest, body.to_wire(), "finished")
        run = job_folder(coordinator.config.store, job_id) / "run"
        run.mkdir(parents=True)
        model = {"model": "hetero_lr", "scaler": None, "options": {}, "coef": [[w] for w in coef[party]], **part}
        (run / MODEL_FILE).write_text(json.dumps(model), encoding="utf-8")


@pytest.fixture
def served(tmp_path):
    with serving_federation(tmp_path) as running:
        yield running


@contextmanager
def serving_federation(tmp_path, guest_node: dict | None = None, **host_policy):
    """Two finished jobs at a guest and a host serving them (``guest_node``: settings of the guest's node.yaml,
    ``host_policy``: of the host's policy); yields the servings, ids both hold, the expected scores of each
    job and the nodes."""
    configs = federation(tmp_path, host=host_policy)
    with configs["guest"].open("a", encoding="utf-8") as guest_config:
        guest_config.write(yaml.safe_dump(guest_node) if guest_node else "")
    nodes = local_nodes(configs)
    servings = {party: Serving(nodes.coordinators[party], nodes.hub.channel(party, CONTROL_JOB))
                for party in ("guest", "host")}
    weights = {"a" * 16: {"guest": [0.2, -0.1, -1.0], "host": [0.5, 0.3]},
               "b" * 16: {"guest": [-0.1, 0.05, 0.5], "host": [-0.2, 0.4]}}
    for job_id, coef in weights.items():
        finished_job(nodes, job_id, coef)
    data = configs["guest"].parent.parent / "data"
    rows = pd.read_csv(data / "guest.csv").merge(pd.read_csv(data / "host.csv"), on="id").head(5)
    ids = rows["id"].astype(str).tolist()

    def expected(job_id: str) -> np.ndarray:
        guest, host = (np.asarray(weights[job_id][p]) for p in ("guest", "host"))
        return expit(rows[GUEST_COLUMNS].to_numpy() @ guest[:-1] + guest[-1] + rows[HOST_COLUMNS].to_numpy() @ host)

    try:
        yield servings, ids, expected, nodes
    finally:
        for serving in servings.values():
            serving.close()
        nodes.stop()


def test_publishing_again_adds_a_version_and_the_guest_chooses_which_one_scores(served):
    servings, ids, expected, _ = served
    guest, host = servings["guest"], servings["host"]
    assert guest.publish("a" * 16, "credit")["version"] == 1
    assert guest.publish("b" * 16, "credit")["version"] == 2
    assert [(m["version"], m["status"], m["current"]) for m in guest.store.models()] == [
        (1, "published", False), (2, "published", True)]
    assert [(m["version"], m["job"]) for m in host.store.models()] == [(1, "a" * 16), (2, "b" * 16)]
    np.testing.assert_allclose(guest.predict("credit", ids), expected("b" * 16), rtol=0, atol=1e-12)
    np.testing.assert_allclose(guest.predict("credit", ids, version=1), expected("a" * 16), rtol=0, atol=1e-12)

    assert guest.rollback("credit") == {"name": "credit", "version": 1}
    np.testing.assert_allclose(guest.predict("credit", ids), expected("a" * 16), rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="no published version before version 1"):
        guest.rollback("credit")
    assert guest.rollback("credit", 2)["version"] == 2


def test_model_list_shows_a_table_of_versions(served, monkeypatch):
    """It printed the API's JSON, publication times as seconds since 1970."""
    from typer.testing import CliRunner

    from isthmus.cli_node import model_app
    from tests.board_helpers import board

    servings, _, _, nodes = served
    monkeypatch.setattr("isthmus.node.client.httpx.Client",
                        lambda base_url, headers, timeout: board(nodes.coordinators["guest"]))
    listed = CliRunner().invoke(model_app, ["list", "--node", "http://127.0.0.1:1"])
    assert listed.exit_code == 0 and listed.stdout == "no model published at this node\n", listed.output
    servings["guest"].publish("a" * 16, "credit")
    servings["guest"].publish("b" * 16, "credit")
    shown = CliRunner().invoke(model_app, ["list", "--node", "http://127.0.0.1:1"]).stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.splitlines() if "credit" in line]
    assert [row[:4] + row[5:] for row in rows] == [["credit", "1", "a" * 16, "published", ""],
                                                  ["credit", "2", "b" * 16, "published", "yes"]], shown
    assert all(re.match(r"20\d\d-\d\d-\d\d", row[4]) for row in rows) and "UTC" in shown, shown


def test_predict_scores_a_file_of_ids_in_batches_and_keeps_what_was_scored(served, monkeypatch, tmp_path):
    """A list beyond the node's limit per request was refused whole; ids could only be typed as arguments."""
    from typer.testing import CliRunner

    from isthmus.cli_node import model_app
    from tests.board_helpers import board

    servings, ids, expected, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    monkeypatch.setattr("isthmus.node.client.httpx.Client",
                        lambda base_url, headers, timeout: board(nodes.coordinators["guest"], serving=servings["guest"]))
    monkeypatch.setattr("isthmus.node.serving.MAX_IDS", 2)
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join(ids[1:]) + "\n\n", encoding="utf-8")
    predict = ["predict", "credit", ids[0], "--ids-file", listed, "--node", "http://127.0.0.1:1"]
    done = CliRunner().invoke(model_app, [*predict, "--csv"])
    assert done.exit_code == 0, done.output
    assert done.stderr.splitlines() == ["scored 2 of 5 ids", "scored 4 of 5 ids", "scored 5 of 5 ids"]
    table = pd.read_csv(io.StringIO(done.stdout), dtype={"id": str})
    assert table.id.tolist() == ids
    np.testing.assert_allclose(table.score, expected("a" * 16), rtol=0, atol=1e-15)

    listed.write_text("\n".join([*ids[1:3], "nobody", ids[3]]), encoding="utf-8")
    failed = CliRunner().invoke(model_app, [*predict, "--csv"])
    assert failed.exit_code == 1 and failed.stdout.splitlines()[1:] == done.stdout.splitlines()[1:3]
    assert "no row for 'nobody' (after the first 2 of 5 ids were scored, printed above)" in failed.stderr
    as_json = CliRunner().invoke(model_app, predict[:3] + predict[5:])
    assert json.loads(as_json.stdout) == {ids[0]: pytest.approx(expected("a" * 16)[0], abs=1e-15)}


def test_publishing_at_a_host_or_asking_for_ids_the_guest_lacks_says_what_to_do(served):
    servings, ids, _, _ = served
    with pytest.raises(ConfigError, match="holds the host's part.*publish it at the node of its guest, 'guest'"):
        servings["host"].publish("a" * 16, "credit")
    servings["guest"].publish("a" * 16, "credit")
    for version in (None, 1):  # the host holds its part of version 1 now, and had read "at this guest" alone
        with pytest.raises(ConfigError, match="holds the host's part.*ask for predictions at the node of its guest"):
            servings["host"].predict("credit", ids[:1], version=version)
    with pytest.raises(ServingError, match=r"has no row for 'nobody', 'x1', 'x2', 'x3', 'x4' and 2 more$"):
        servings["guest"].predict("credit", [ids[0], "nobody", *[f"x{i}" for i in range(1, 7)]])


def test_a_host_serves_only_versions_it_still_holds(served):
    servings, ids, expected, _ = served
    guest, host = servings["guest"], servings["host"]
    guest.publish("a" * 16, "credit")
    guest.publish("b" * 16, "credit")
    host.unpublish("credit", 1)  # the host's operator withdraws version 1 whatever the guest chooses
    with pytest.raises(ServingError, match="refused the prediction: 'host': unknown model"):
        guest.predict("credit", ids, version=1)
    np.testing.assert_allclose(guest.predict("credit", ids), expected("b" * 16), rtol=0, atol=1e-12)


def test_unpublishing_at_the_guest_withdraws_the_hosts_version_and_moves_the_current_one_back(served):
    servings, ids, expected, _ = served
    guest, host = servings["guest"], servings["host"]
    guest.publish("a" * 16, "credit")
    guest.publish("b" * 16, "credit")
    assert guest.unpublish("credit", 2) == {"name": "credit", "unpublished": [2], "current": 1}
    deadline = time.monotonic() + 5
    while ("credit", 2) in host.models and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(m["version"], m["status"]) for m in host.store.models()] == [(1, "published"), (2, "unpublished")]
    np.testing.assert_allclose(guest.predict("credit", ids), expected("a" * 16), rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="no published model 'credit' version 2"):
        guest.predict("credit", ids, version=2)
    guest.unpublish("credit")
    with pytest.raises(ConfigError, match="no published model 'credit'"):
        guest.predict("credit", ids)
    assert guest.publish("a" * 16, "credit")["version"] == 3  # numbers are never reused


def test_published_versions_and_the_rollback_survive_a_restart(served):
    servings, ids, expected, nodes = served
    guest = servings["guest"]
    guest.publish("a" * 16, "credit")
    guest.publish("b" * 16, "credit")
    guest.rollback("credit", 1)
    guest.close()
    again = Serving(nodes.coordinators["guest"], nodes.hub.channel("guest", CONTROL_JOB))
    try:
        assert sorted(again.models) == [("credit", 1), ("credit", 2)]
        np.testing.assert_allclose(again.predict("credit", ids), expected("a" * 16), rtol=0, atol=1e-12)
    finally:
        again.close()


def test_a_store_from_before_versions_serves_each_published_name_as_its_version_1(tmp_path):
    old = sqlite3.connect(tmp_path / "node.sqlite")
    old.executescript("""CREATE TABLE models (name TEXT PRIMARY KEY, job TEXT, status TEXT, created REAL);
        INSERT INTO models VALUES ('credit-v1', 'aaaaaaaaaaaaaaaa', 'published', 1.0);""")
    old.commit()
    old.close()
    store = Store(tmp_path / "node.sqlite")
    assert store.models() == [{"name": "credit-v1", "version": 1, "job": "a" * 16, "status": "published",
                               "created": 1.0, "current": True}]
    assert store.next_version("credit-v1") == 2
    store.close()


def test_a_prediction_failing_at_the_host_fails_at_the_guest_at_once_naming_the_host(served):
    """The host tells the guest in the prediction's scope; before, the guest waited for its timeout (the
    node's, 20 s by default; here the in-process hub's, 600 s), holding the model's other predictions."""
    servings, ids, expected, _ = served
    servings["guest"].publish("a" * 16, "credit")
    part = servings["host"].models["credit", 1].part

    def failing(channel, X):
        raise DataError("the host's table changed under the model")

    part.serve, started = failing, time.monotonic()
    with pytest.raises(ServingError, match="host 'host' failed the prediction for model 'credit': .*host: serving "
                                           "failed: DataError"):
        servings["guest"].predict("credit", ids)
    assert time.monotonic() - started < 5
    del part.serve  # the next prediction is served as usual
    np.testing.assert_allclose(servings["guest"].predict("credit", ids), expected("a" * 16), atol=1e-12)


def test_refused_and_failed_predictions_leave_nothing_waiting_at_either_node(served):
    """The nodes' link never ends, so a message nobody reads would wait there for ever, held against its
    sender's quota: the guest's release of every prediction a host refused (an id it lacks) piled up at
    the host, and after 4,096 of them the guest could deliver that host nothing, proposals included."""
    servings, ids, expected, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    host = servings["host"].models["credit", 1]
    del host.index[ids[0]]
    for _ in range(5):
        with pytest.raises(UnknownId, match="hosts refused the prediction: 'host': its table lacks one of the ids"):
            servings["guest"].predict("credit", ids[:2])

    def failing(channel, X):
        raise DataError("the host's table changed under the model")

    host.part.serve = failing
    for _ in range(3):
        with pytest.raises(ServingError, match="host 'host' failed the prediction"):
            servings["guest"].predict("credit", ids[1:])
    del host.part.serve
    np.testing.assert_allclose(servings["guest"].predict("credit", ids[1:]), expected("a" * 16)[1:], atol=1e-12)
    waiting = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the last sends are on their way
        waiting = {party: nodes.hub.mailboxes[party].backlog(peer) for party, peer in (("host", "guest"), ("guest", "host"))}
        if waiting == {"host": (0, 0), "guest": (0, 0)}:
            break
        time.sleep(0.05)
    assert waiting == {"host": (0, 0), "guest": (0, 0)}


@contextmanager
def silent_host(servings) -> Iterator[None]:
    """In the block, the host takes every prediction of version 1 of 'credit' and answers none of them."""
    answer, part = threading.Event(), servings["host"].models["credit", 1].part
    part.serve = lambda channel, X: answer.wait(30)
    try:
        yield
    finally:
        answer.set()
        del part.serve


def test_predictions_stuck_on_a_silent_host_are_bounded_in_number_and_in_time(served):
    """A host that answers nothing held each prediction of its model for the node's timeout in turn, and
    they piled up without bound. Now the node takes MAX_PREDICTIONS at once (more are busy at once), and
    one waits for its model at most the node's timeout (5 s here)."""
    servings, ids, expected, _ = served
    guest = servings["guest"]
    guest.publish("a" * 16, "credit")
    with silent_host(servings):
        started = time.monotonic()
        taken = [guest.submit("credit", ids) for _ in range(MAX_PREDICTIONS)]
        with pytest.raises(ServingBusy, match=f"{MAX_PREDICTIONS} predictions are in progress"):
            guest.submit("credit", ids)
        assert time.monotonic() - started < 1
        outcomes = [future.exception(timeout=30) for future in taken]
        ended = time.monotonic() - started
    assert ended < 15  # one waited 5 s for the host, the others 5 s for the model (one more may have got it)
    busy = [e for e in outcomes if isinstance(e, ServingBusy)]
    silent = [e for e in outcomes if isinstance(e, ServingError) and "did not answer" in str(e)]
    assert len(busy) + len(silent) == MAX_PREDICTIONS and len(silent) in (1, 2), outcomes
    assert "was still answering an earlier prediction after 5 s" in str(busy[0])
    np.testing.assert_allclose(guest.submit("credit", ids).result(timeout=10), expected("a" * 16), atol=1e-12)


def test_a_prediction_waits_for_a_host_that_does_not_answer_only_its_own_deadline(tmp_path):
    """A host that answers pings but never a prediction held each one for the node's timeout (20 s by
    default), which consent needs: a guest's node.yaml sets a tighter prediction_timeout."""
    with serving_federation(tmp_path, guest_node={"prediction_timeout": 0.5}) as (servings, ids, expected, _):
        guest = servings["guest"]
        guest.publish("a" * 16, "credit")
        with silent_host(servings):
            started = time.monotonic()
            with pytest.raises(ServingError, match="host 'host' did not answer the prediction .* within 0.5 s"):
                guest.predict("credit", ids)
            assert time.monotonic() - started < 2  # the node's timeout is 5 s here
        np.testing.assert_allclose(guest.predict("credit", ids), expected("a" * 16), rtol=0, atol=1e-12)


@contextmanager
def held_load(host: Serving, version: int) -> Iterator[threading.Event]:
    """The host's loading of ``version`` of a model waits until the block ends (a table of millions of rows);
    yields the event set once that loading has started."""
    started, release, load = threading.Event(), threading.Event(), host._load

    def slow(name: str, v: int, job: str):
        if v == version:
            started.set()
            release.wait(30)
        return load(name, v, job)

    host._load = slow
    try:
        yield started
    finally:
        release.set()


def test_a_host_loading_a_publication_goes_on_serving_its_guest(served):
    """A host loaded a publication on its node's link: while it read its table (seconds for millions of rows),
    nothing else reached it, so every prediction of its other models waited, and consent messages too."""
    servings, ids, expected, _ = served
    guest, host = servings["guest"], servings["host"]
    guest.publish("a" * 16, "credit")
    with held_load(host, 2) as started:
        publishing = threading.Thread(target=guest.publish, args=("b" * 16, "credit", 30))
        publishing.start()
        assert started.wait(5)
        np.testing.assert_allclose(guest.predict("credit", ids, version=1), expected("a" * 16), rtol=0, atol=1e-12)
    publishing.join()
    np.testing.assert_allclose(guest.predict("credit", ids), expected("b" * 16), rtol=0, atol=1e-12)


def test_a_version_the_guest_gave_up_on_is_dropped_by_a_host_that_loaded_it_late(served):
    servings, _, _, _ = served
    guest, host = servings["guest"], servings["host"]
    with held_load(host, 1) as started:
        with pytest.raises(ServingError, match=r"hosts \['host'\] did not confirm publishing 'credit' version 1"):
            guest.publish("a" * 16, "credit", timeout=0.5)
        assert started.is_set()
    assert guest.publish("a" * 16, "credit")["version"] == 2  # loaded after version 1 was: version 1 is spent
    assert list(host.models) == [("credit", 2)]  # version 1 dropped as it loaded, or unpublished just after
    assert [m["version"] for m in host.store.models() if m["status"] == "published"] == [2]
