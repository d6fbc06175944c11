"""A node removes a job's per-row outputs (predictions naming customers, payload copies) when its operator says
so or `clean_after_days` after the job ended, and keeps the rest: it kept them for ever, with no way to remove
them but by hand in its store folder."""

from __future__ import annotations

import html
import time

import pytest

from isthmus.errors import ConfigError
from isthmus.node.config import load_node_config
from isthmus.node.retention import clean_expired
from tests.board_helpers import board, csrf_of, ended_job, job_cli
from tests.node_helpers import federation, local_nodes

KEPT = ("metrics.json", "model.json", "audit.jsonl", "events.jsonl", "party.log")


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def test_the_operator_cleans_an_ended_job_and_only_its_per_row_outputs_go(nodes, monkeypatch):
    job_id, run = ended_job(nodes)
    guest = nodes.coordinators["guest"]
    web = board(guest)
    refused = web.post(f"/v1/jobs/{job_id}/clean")
    assert refused.status_code == 409 and "running: clean it once it has ended" in refused.json()["detail"]
    assert (run / "predictions.csv").exists()

    guest.job_done(job_id, "finished", None)
    assert web.post(f"/v1/jobs/{job_id}/clean", headers={"origin": "https://evil.example"}).status_code == 403
    assert (run / "predictions.csv").exists()  # a web page's blind post removes nothing
    clean = job_cli(nodes, "guest", monkeypatch)
    done = clean("clean", job_id)
    assert done.exit_code == 0 and done.stdout.strip() == "removed predictions.csv, audit-payloads", done.output
    assert not (run / "predictions.csv").exists() and not (run / "audit-payloads").exists()
    assert all((run / name).exists() for name in KEPT)
    summary = web.get(f"/v1/jobs/{job_id}").json()
    assert summary["cleaned"] > 0 and summary["cleaned_reason"] == "cleaned by this node's operator"
    assert 'id="cleaned">Its per-row outputs (predictions, payload copies) were removed here on' in \
        web.get(f"/jobs/{job_id}").text
    results = web.get(f"/jobs/{job_id}/results").text
    assert 'id="cleaned"' in results and 'id="roc-chart"' not in results and "<td>auc</td><td>0.9000</td>" in results
    assert clean("clean", job_id).stdout.strip() == "nothing to remove: the job left no per-row output here"
    assert clean("clean", "0123456789abcdef").exit_code == 1


def test_the_board_offers_cleaning_an_ended_job_behind_its_csrf_token(nodes):
    job_id, run = ended_job(nodes)
    guest = nodes.coordinators["guest"]
    web = board(guest)
    assert 'id="clean-form"' not in web.get(f"/jobs/{job_id}").text  # still running
    guest.job_done(job_id, "finished", None)
    page = web.get(f"/jobs/{job_id}").text
    assert f'action="/jobs/{job_id}/clean" id="clean-form"' in page
    assert web.post(f"/jobs/{job_id}/clean", data={"csrf": "forged"}).status_code == 403
    assert (run / "predictions.csv").exists()
    done = web.post(f"/jobs/{job_id}/clean", data={"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"].endswith("note=cleaned")
    assert not (run / "predictions.csv").exists() and not (run / "audit-payloads").exists()
    page = html.unescape(web.get(f"/jobs/{job_id}?note=cleaned").text)
    assert "You removed this job's per-row outputs here" in page and 'id="clean-form"' not in page
    assert "cleaned by this node's operator" in page


def test_jobs_ended_longer_ago_than_clean_after_days_are_cleaned_and_no_other(nodes):
    old, old_run = ended_job(nodes)
    guest = nodes.coordinators["guest"]
    guest.job_done(old, "finished", None)
    running, running_run = ended_job(nodes)
    store, store_dir = guest.store, guest.config.store
    assert clean_expired(store, store_dir, days=1) == []  # it ended just now
    assert clean_expired(store, store_dir, days=1, now=time.time() + 2 * 86400) == [old]
    assert not (old_run / "predictions.csv").exists() and (running_run / "predictions.csv").exists()
    assert store.job(old)["cleaned_reason"] == "ended more than 1 days ago (clean_after_days)"
    assert clean_expired(store, store_dir, days=1, now=time.time() + 2 * 86400) == []  # once


def test_clean_after_days_must_be_positive(tmp_path):
    configs = federation(tmp_path)
    text = configs["guest"].read_text()
    configs["guest"].write_text(text + "clean_after_days: 0\n")
    with pytest.raises(ConfigError, match="clean_after_days"):
        load_node_config(configs["guest"])
