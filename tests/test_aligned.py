"""A vertical job without an intersect step checks that the parties' rows line up before it trains.

It trained on whatever rows each file held, in file order: with the host's default_credit rows shuffled,
AUC 0.638 instead of 0.712, and not a word. Pre-aligned files (the benchmarks') still train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_parties

from isthmus.errors import DataError
from isthmus.jobs.events import read_events
from isthmus.jobs.plan import make_plan
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.jobs.steps.aligned import ids_digest
from isthmus.transport.local import LocalHub

PARTIES = ["guest", "host", "arbiter"]


def vertical(folder: Path, steps: list, *, shuffled: bool = False):
    rng = np.random.default_rng(0)
    ids = [f"c{i:04d}" for i in range(200)]
    guest = pd.DataFrame({"id": ids, "y": rng.integers(0, 2, 200), "a": rng.normal(size=200)})
    host = pd.DataFrame({"id": ids, "b": rng.normal(size=200)})
    guest.to_csv(folder / "guest.csv", index=False)
    (host.sample(frac=1, random_state=1) if shuffled else host).to_csv(folder / "host.csv", index=False)
    parties = {"guest": {"address": "127.0.0.1:1", "data": {"path": "guest.csv", "id": "id", "label": "y"}},
               "host": {"address": "127.0.0.1:2", "data": {"path": "host.csv", "id": "id"}},
               "arbiter": {"address": "127.0.0.1:3"}}
    return parse_job({"job": "aligned", "parties": parties, "steps": steps}, base_dir=folder)


@pytest.mark.parametrize("steps, planned", [
    ([{"train": {"model": "hetero_lr"}}, "evaluate"], ["aligned", "train", "evaluate"]),
    ([{"binning": {}}, {"train": {"model": "hetero_secureboost"}}], ["aligned", "binning", "train"]),
    (["intersect", {"train": {"model": "hetero_lr"}}], ["intersect", "train"]),
    (["aligned", {"train": {"model": "hetero_lr"}}], ["aligned", "train"]),
])
def test_the_plan_checks_alignment_before_the_first_vertical_step_only_without_an_intersection(
        tmp_path, steps, planned):
    plan = make_plan(vertical(tmp_path, steps), "host")
    assert [step.name for step in plan.steps] == planned
    assert any("aligned" in note for note in plan.notes) == (planned[0] == "aligned" and "aligned" not in steps)


def run_all(spec, folder: Path) -> None:
    hub = LocalHub(PARTIES)
    run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), folder / "run" / p)) for p in PARTIES},
                timeout=60)


def test_tables_listing_the_same_ids_in_order_pass(tmp_path):
    run_all(vertical(tmp_path, ["aligned"]), tmp_path)
    events = read_events(tmp_path / "run" / "guest" / "events.jsonl")
    assert {"step": "aligned", "rows": 200, "hosts": 1}.items() <= next(e for e in events if "hosts" in e).items()
    assert events[-1]["status"] == "finished"


def test_a_host_whose_rows_are_in_another_order_stops_the_job_naming_it(tmp_path):
    with pytest.raises(AssertionError) as caught:
        run_all(vertical(tmp_path, ["aligned", {"train": {"model": "hetero_lr"}}], shuffled=True), tmp_path)
    assert isinstance(caught.value.__cause__, DataError)
    assert "the table of host 'host' does not list the guest's 200 ids in the same order" in str(caught.value)
    assert not (tmp_path / "run" / "guest" / "model.json").exists()


def test_the_digest_takes_ids_as_intersect_compares_them_and_the_job_as_salt():
    assert ids_digest("j", "p", [133, " 7 "]) == ids_digest("j", "p", ["133", "7"])
    assert ids_digest("j", "p", ["1", "2"]) != ids_digest("j", "p", ["2", "1"])
    assert ids_digest("j", "p", ["12", "3"]) != ids_digest("j", "p", ["1", "23"])
    assert ids_digest("j", "p", ["1"]) != ids_digest("k", "p", ["1"])
