"""A horizontal job whose client never starts, every other party a thread over the in-process hub.

The aggregator waited for that client's columns with the job's message timeout (ten minutes by default)
and then failed the whole job, though secure aggregation and min_clients let the rounds go on without it.
It now waits round_timeout, leaves the client out while the quorum every client insists on remains, and
otherwise says which clients it did not hear from and how many every sum needs; a client left out that
starts after all is told so once its columns come.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from isthmus.algorithms.homo_linear.client import FEATURES_TAG
from isthmus.demos.horizontal import make_horizontal_data
from isthmus.jobs.plan import make_plan
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.channel import RelayChannel
from isthmus.transport.local import LocalHub


class _Gated(RelayChannel):
    """Sends (but the columns) only once ``gate`` is set; with ``opens``, sets it after sending the columns."""

    def __init__(self, inner, gate: threading.Event, *, opens: bool = False):
        super().__init__(inner)
        self.gate, self.opens = gate, opens

    def send(self, to, tag, obj):
        columns = tag.endswith(FEATURES_TAG)
        if not columns and not self.opens:
            assert self.gate.wait(10)
        super().send(to, tag, obj)
        if columns and self.opens:
            self.gate.set()


def run_without_the_last_client(folder, clients: int, *, late: bool = False,
                                late_columns: bytes | None = None) -> dict[str, BaseException]:
    """Run the job's parties but its last client (``late``: that one starts once the aggregator has left it
    out, and the first client's round-1 replies wait for its columns; ``late_columns``: then it sends only
    these bytes as its columns); returns each failed party's error."""
    names = [f"client-{n}" for n in range(1, clients + 1)]
    files = make_horizontal_data(folder / "data", clients=clients)
    parties = {name: {"address": f"127.0.0.1:{n}", "data": {"path": str(train), "id": "id", "label": "y"}}
               for n, (name, (train, _)) in enumerate(zip(names, files), start=1)}
    parties["aggregator"] = {"address": "127.0.0.1:9"}
    spec = parse_job({"job": "absent-client", "parties": parties,
                      "steps": [{"train": {"model": "homo_lr", "rounds": 2, "round_timeout": 2}}]}, base_dir=folder)
    create_federation(folder / "certs", ["aggregator", *names])
    hub = LocalHub(["aggregator", *names])
    errors: dict[str, BaseException] = {}
    starts_late = late or late_columns is not None
    columns_in, channels = threading.Event(), {}
    if starts_late:
        channels = {names[0]: _Gated(hub.channel(names[0], spec.name), columns_in),
                    names[-1]: _Gated(hub.channel(names[-1], spec.name), columns_in, opens=True)}

    def party(name: str) -> None:
        try:
            channel = channels.get(name) or hub.channel(name, spec.name)
            if name == names[-1] and late_columns is not None:
                scope = make_plan(spec, name).first("train").scope
                channel.inner._send_raw("aggregator", f"{scope}/{FEATURES_TAG}", late_columns)
                columns_in.set()
                return
            run_party(spec, name, channel, folder / "run" / name, certs_dir=folder / "certs")
        except Exception as exc:  # each party's outcome is the test's to judge
            errors[name] = exc

    threads = [threading.Thread(target=party, args=(name,), daemon=True) for name in ["aggregator", *names[:-1]]]
    for thread in threads:
        thread.start()
    if starts_late:
        events = folder / "run" / "aggregator" / "events.jsonl"
        deadline = time.monotonic() + 30
        while not (events.exists() and "left_out" in events.read_text()):
            assert time.monotonic() < deadline, "the aggregator never left the last client out"
            time.sleep(0.05)
        threads.append(threading.Thread(target=party, args=(names[-1],), daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def aggregator_events(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "run" / "aggregator" / "events.jsonl").read_text().splitlines()]


def test_a_client_that_never_starts_is_left_out_while_the_quorum_remains(tmp_path):
    assert run_without_the_last_client(tmp_path, clients=4) == {}  # 3 of 4: dropout_tolerance 0.3 lets one go
    events = aggregator_events(tmp_path)
    assert {"left_out": ["client-4"], "why": "no columns within 2 s (round_timeout)"}.items() <= next(
        e for e in events if "left_out" in e and "epoch" not in e).items()
    assert [e["clients"] for e in events if "epoch" in e] == [3, 3]
    assert json.loads((tmp_path / "run" / "aggregator" / "model.json").read_text())["secure_aggregation"] is True


def test_a_client_shows_each_round_it_trained_in(tmp_path):
    """Its operator saw nothing between "serving" and the model saved, for however many rounds it took."""
    assert not run_without_the_last_client(tmp_path, 4)
    events = [json.loads(line) for line in (tmp_path / "run" / "client-1" / "events.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["epochs"]) for e in events if "epoch" in e] == [(1, 2), (2, 2)]


def test_a_client_left_out_that_starts_after_all_is_told_at_once(tmp_path):
    """Before, it sent its columns and waited for rounds that never came: its message timeout, ten minutes."""
    errors = run_without_the_last_client(tmp_path, clients=4, late=True)
    assert set(errors) == {"client-4"}, errors
    assert "ended the job without a model: left out: no columns within 2 s (round_timeout)" in str(errors["client-4"])
    events = aggregator_events(tmp_path)
    assert any(e.get("told_left_out") == "client-4" for e in events)
    assert [e["clients"] for e in events if "epoch" in e] == [3, 3]


def test_too_few_clients_for_the_quorum_is_one_clear_error(tmp_path):
    errors = run_without_the_last_client(tmp_path, clients=3)  # 2 of 3: every secure sum needs all 3
    assert "step train failed at aggregator (DataError" in str(errors["client-1"])
    assert str(errors["aggregator"]) == (
        "2 of the 3 clients sent their columns within 2 s (round_timeout), and every sum needs 3 (min_clients 2; "
        "under secure aggregation each client's update goes only into sums of 3 of the job's 3: dropout_tolerance "
        "0.3); not heard from: client-3")


@pytest.mark.parametrize("resume", [False, True])
def test_an_aggregator_waiting_for_columns_says_for_whom_and_why_it_may_be(tmp_path, monkeypatch, resume):
    """A resumed aggregator waited its whole round_timeout in silence for clients still running from before
    it stopped, which had sent their columns once, to the aggregator that stopped, and never would again."""
    from isthmus.algorithms.base import Party, Roster
    from isthmus.algorithms.homo_linear import aggregator
    from isthmus.algorithms.homo_linear.options import LinearModelOptions
    from isthmus.errors import DataError

    monkeypatch.setattr(aggregator, "SLOW_COLUMNS_S", 0.2)
    events = []
    hub = LocalHub(["aggregator", "client-1", "client-2"])
    party = Party("aggregator", Roster({"aggregator": "aggregator", "client-1": "client", "client-2": "client"}),
                  hub.channel("aggregator", "j"), None, tmp_path, progress=lambda **event: events.append(event),
                  resume=resume)
    hub.channel("client-1", "j").send("aggregator", FEATURES_TAG, ["x0", "x1"])
    with pytest.raises(DataError, match="not heard from: client-2") as failed:
        aggregator.agreed_features(party, LinearModelOptions(round_timeout=1))
    restart = ("; a client still running from before this aggregator stopped does not send them again: stop it "
               "and start it again (isthmus run ... --force)")
    why = "waiting up to round_timeout (1 s) for their columns" + (
        restart if resume else " (a client sends them once it has read its table)")
    assert events == [{"waiting_for": ["client-2"], "why": why}]
    assert str(failed.value).endswith("not heard from: client-2" + (restart if resume else ""))


def test_a_client_left_out_for_running_another_job_ends_the_wait_for_its_columns(tmp_path):
    """The client whose copy named another model stopped after 2 s; the aggregator waited round_timeout for
    its columns, then said it had not heard from it."""
    from isthmus.algorithms.base import Party, Roster
    from isthmus.algorithms.homo_linear import aggregator
    from isthmus.algorithms.homo_linear.options import LinearModelOptions
    from isthmus.errors import DataError

    why = "party 'client-2' runs another job than this one: step 0 'train', option 'model': homo_lr here, ..."
    events = []
    hub = LocalHub(["aggregator", "client-1", "client-2"])
    party = Party("aggregator", Roster({"aggregator": "aggregator", "client-1": "client", "client-2": "client"}),
                  hub.channel("aggregator", "j"), None, tmp_path, progress=lambda **event: events.append(event))
    hub.mailboxes["aggregator"].refuse("j", "client-2", why)  # as the answering of job summaries does
    started = time.monotonic()
    with pytest.raises(DataError) as failed:
        aggregator.agreed_features(party, LinearModelOptions(round_timeout=60))
    assert time.monotonic() - started < 5
    assert str(failed.value).startswith("with client-2 left out, 1 of the 2 clients remain, and every sum needs 2")
    assert f"; client-2 left out: a message was refused on arrival: {why}" in str(failed.value)

    hub.mailboxes["aggregator"].refuse("j", "client-2", why)
    hub.channel("client-1", "j").send("aggregator", FEATURES_TAG, ["x0", "x1"])
    features, present = aggregator.agreed_features(party, LinearModelOptions(round_timeout=60, min_clients=1,
                                                                             secure_aggregation=False))
    assert (features, present) == (["x0", "x1"], ["client-1"]) and time.monotonic() - started < 10
    assert events[-1]["left_out"] == ["client-2"] and why in events[-1]["why"]
