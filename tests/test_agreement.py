"""Parties check that they run the same job before their first step: each runs its own copy of the job file
(and its own --record), and copies that differed ran until a party waited for a message its peer's job never
sends: a `record` step only the guest had failed after 60 s, its peers long gone."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from isthmus.jobs.agreement import TAG as AGREEMENT
from isthmus.jobs.agreement import JobMismatchError, check_same_job, first_difference, job_summary, peer_running_another
from isthmus.demos.horizontal import make_horizontal_data
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.plan import Plan, make_plan
from isthmus.jobs.spec import parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub
from isthmus.transport.mailbox import ABORT_TAG
from tests.vertical_job import LONG_TRAINING, vertical_job

JOB = {"job": "same", "parties": {"guest": {"address": "127.0.0.1:7001", "data": {"path": "g.csv", "id": "id", "label": "y"}},
                                  "host": {"address": "127.0.0.1:7002", "data": {"path": "h.csv", "id": "id"}},
                                  "arbiter": {"address": "127.0.0.1:7003"}},
       "steps": ["intersect", {"train": {"model": "hetero_lr", "epochs": 2}}]}


def plan(party: str = "guest", **changes) -> Plan:
    """``party``'s plan of JOB with ``changes``: ``steps__1__train__epochs=3`` sets that nested value."""
    job = yaml.safe_load(yaml.safe_dump(JOB))
    for path, value in changes.items():
        *where, last = path.split("__")
        node = job
        for key in where:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return make_plan(parse_job(job, base_dir=Path(".")), party)


def test_the_summary_holds_what_every_party_shares_and_no_path():
    summary = job_summary(plan(record=True))
    assert [step[0] for step in summary["steps"]] == ["intersect", "train", "record"]
    assert summary["steps"][1][1]["model"] == "hetero_lr" and summary["steps"][1][1]["epochs"] == 2
    assert summary["parties"]["host"] == ["host", "127.0.0.1:7002"]
    assert "g.csv" not in repr(summary) and "resume" not in summary["options"] and "record" not in summary["options"]
    assert job_summary(plan()) == job_summary(plan(parties__host__data__path="/elsewhere/mine.csv"))  # its own


@pytest.mark.parametrize("changes, difference", [
    ({"record": True}, "steps: intersect, train here, intersect, train, record there"),
    ({"steps__1__train__epochs": 3}, "step 1 'train', option 'epochs': 2 here, 3 there"),
    ({"parties__arbiter__address": "127.0.0.1:7009"}, "parties: "),
    ({"timeout": 30}, "options: "),
    ({"steps__1__train__model": "hetero_linr"}, "step 1 'train', option 'model': hetero_lr here, hetero_linr there"),
])
def test_the_first_difference_is_named_on_both_sides(changes, difference):
    assert first_difference(job_summary(plan()), job_summary(plan(**changes))).startswith(difference)
    assert first_difference(job_summary(plan()), job_summary(plan())) is None


def test_both_parties_stop_over_the_in_process_channel():
    hub = LocalHub(["guest", "host", "arbiter"])
    errors: dict[str, BaseException] = {}
    guest = threading.Thread(target=lambda: _check(hub, "guest", plan("guest"), "host", errors))
    host = threading.Thread(target=lambda: _check(hub, "host", plan("host", record=True), "guest", errors))
    for thread in (guest, host):
        thread.start()
    for thread in (guest, host):
        thread.join(10)
    assert str(errors["guest"]).startswith("party 'host' runs another job than this one: steps: intersect, train here")
    assert str(errors["host"]).startswith("party 'guest' runs another job than this one: steps: intersect, train, "
                                          "record here")


@pytest.mark.parametrize("release, shown", [("0.2.0", "0.1.0 here, 0.2.0 there"),
                                            (None, "0.1.0 here, an earlier release (one that does not say) there")])
def test_a_peer_on_another_release_is_named_before_anything_else(monkeypatch, release, shown):
    """An upgraded party and one that was not: the same job file, messages that may differ. They trained until a
    message did not decode, or worse, decoded into something else."""
    monkeypatch.setattr("isthmus.jobs.agreement.__version__", "0.1.0")
    theirs = {**job_summary(plan("host")), "isthmus": release}
    if release is None:
        del theirs["isthmus"]
    hub = LocalHub(["guest", "host"])
    hub.channel("host", "same").send("guest", AGREEMENT, theirs)
    with pytest.raises(JobMismatchError) as caught:
        check_same_job(hub.channel("guest", "same"), plan("guest"), ["host"])
    assert str(caught.value) == (f"party 'host' runs another isthmus release: isthmus: {shown}; every party of a job "
                                 "needs the same release") and caught.value.peer == "host"


def _check(hub: LocalHub, name: str, own_plan, peer: str, errors: dict) -> None:
    try:
        check_same_job(hub.channel(name, "same"), own_plan, [peer])
    except JobMismatchError as exc:
        errors[name] = exc


def test_a_peer_that_sent_the_summary_of_another_job_runs_that_job():
    mismatch = peer_running_another(plan("guest"), {"host": [("older", "1-train/x"), ("other", AGREEMENT)]})
    assert str(mismatch) == ("party 'host' runs another job than this one: job: same here, other there; every "
                             "party needs the same job file") and mismatch.peer == "host"
    gave_up = peer_running_another(plan("guest"), {"arbiter": [("other", ABORT_TAG)]})  # it gave up on that one
    assert str(gave_up).startswith("party 'arbiter' runs another job")
    assert peer_running_another(plan("guest"), {"host": [("other", "1-train/x"), ("same", AGREEMENT)],
                                                "stranger": [("other", AGREEMENT)]}) is None  # not a sign, or no peer


def test_parties_with_other_job_files_stop_at_once_naming_the_difference(tmp_path):
    """Three `isthmus run` processes, the guest alone with --record: every one ends within seconds."""
    job = vertical_job(tmp_path, "copies", [{"intersect": {}}, {"train": {**LONG_TRAINING, "epochs": 1}}])
    create_federation(tmp_path / "certs", ["arbiter", "guest", "host"])
    started = time.monotonic()
    processes = {party: subprocess.Popen(
        [sys.executable, "-m", "isthmus", "run", str(job), "--party", party, "--certs", str(tmp_path / "certs"),
         "--out", str(tmp_path / "out"), *(["--record"] if party == "guest" else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for party in ("guest", "host", "arbiter")}
    try:
        outputs = {party: process.communicate(timeout=50)[0] for party, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    assert time.monotonic() - started < 45, outputs  # the host waited 60 s to deliver to a peer gone
    assert all(process.returncode == 1 for process in processes.values()), outputs
    assert "runs another job than this one: steps: intersect, train, record here, intersect, train there" in \
        outputs["guest"], outputs["guest"]
    for party in ("host", "arbiter"):  # each finds the difference itself
        assert "party 'guest' runs another job than this one: steps: intersect, train here, intersect, train, " \
            "record there" in outputs[party], outputs[party]
    assert not (tmp_path / "out" / "guest" / "model.json").exists()


def test_a_party_whose_job_file_names_another_job_stops_every_party_within_seconds(tmp_path):
    """The host's copy names another job and it starts last: its first summary refused, it ended, and the
    guest waited for it 60 s, then said nothing listened where the host should."""
    steps = [{"intersect": {}}, {"train": {**LONG_TRAINING, "epochs": 1}}]
    job = vertical_job(tmp_path, "copies", steps)
    other = yaml.safe_load(job.read_text())
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**other, "job": "other"}))
    create_federation(tmp_path / "certs", ["arbiter", "guest", "host"])

    def run(party: str, job_file: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(job_file), "--party", party, "--certs",
                                 str(tmp_path / "certs"), "--out", str(tmp_path / "out")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    started = time.monotonic()
    processes = {party: run(party, job) for party in ("guest", "arbiter")}
    time.sleep(2)
    processes["host"] = run("host", tmp_path / "other.yaml")
    try:
        outputs = {party: process.communicate(timeout=70)[0] for party, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    assert time.monotonic() - started < 30, outputs
    assert all(process.returncode == 1 for process in processes.values()), outputs
    assert not any("nothing listens" in output for output in outputs.values()), outputs
    assert any("party 'host' runs another job than this one: job: copies here, other there" in outputs[party]
               for party in ("guest", "arbiter")), outputs


def test_a_horizontal_client_with_another_copy_stops_and_the_rounds_go_on_without_it(tmp_path):
    """Its aggregator waits for no client, so it answers each client's summary as it comes. A client under
    another model (or other local epochs) trained unheard, and the aggregator failed saying it never sent
    its columns."""
    names = ["client-1", "client-2"]
    files = make_horizontal_data(tmp_path / "data", clients=2)
    parties = loopback_parties({**{name: {"data": {"path": str(train), "id": "id", "label": "y"}}
                                       for name, (train, _) in zip(names, files)}, "aggregator": {}})
    train = {"model": "homo_lr", "rounds": 2, "local_epochs": 1, "secure_aggregation": False, "min_clients": 1,
             "round_timeout": 5}
    job = write_job(tmp_path / "job.yaml", {"job": "rows", "parties": parties, "steps": [{"train": train}]})
    other = write_job(tmp_path / "other.yaml", {"job": "rows", "parties": parties,
                                                "steps": [{"train": {**train, "local_epochs": 3}}]})
    create_federation(tmp_path / "certs", ["aggregator", *names])
    processes = {party: subprocess.Popen(
        [sys.executable, "-m", "isthmus", "run", str(other if party == "client-2" else job), "--party", party,
         "--certs", str(tmp_path / "certs"), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for party in ("aggregator", *names)}
    try:
        outputs = {party: process.communicate(timeout=60)[0] for party, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    codes = {party: process.returncode for party, process in processes.items()}
    assert codes == {"aggregator": 0, "client-1": 0, "client-2": 1}, outputs
    assert "party 'aggregator' runs another job than this one: step 0 'train', option 'local_epochs': 3 here, 1 " \
        "there" in outputs["client-2"], outputs["client-2"]
    assert "client 'client-2' is left out: party 'client-2' runs another job than this one" in outputs["aggregator"]
