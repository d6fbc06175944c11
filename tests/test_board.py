"""The board's pages over in-process nodes: what each page shows, approvals through its forms, the live stream."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_helpers import redate
from typer.testing import CliRunner

from isthmus.cli_node import node_app
from isthmus.transport.keyfiles import load_certificate
from isthmus.transport.party_keys import rekey_party_keys
from tests.board_helpers import board, csrf_of, pending_job, write_run
from tests.node_helpers import federation, local_nodes


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def test_jobs_are_listed_filtered_and_linked(nodes):
    job_id = pending_job(nodes)
    web = board(nodes.coordinators["guest"])
    assert web.get("/").headers["location"] == "/jobs"
    page = web.get("/jobs")
    assert page.status_code == 200 and f'href="/jobs/{job_id}"' in page.text and "hetero_lr" in page.text
    assert "host" in page.text and "pending" in page.text
    assert job_id not in web.get("/jobs", params={"q": "no-such-job"}).text
    assert job_id in web.get("/jobs", params={"q": "HETERO", "status": "pending"}).text
    assert job_id not in web.get("/jobs", params={"status": "finished"}).text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_approving_through_the_form_acts_once_and_refusing_needs_a_reason(nodes):
    job_id = pending_job(nodes)
    web = board(nodes.coordinators["guest"])
    page = web.get("/approvals").text
    assert f'id="job-{job_id}"' in page and "min_intersection" in page and "customers" in page
    assert "max_rows" in page
    assert "min_shared_rows: 100" in page  # the full proposal
    token = csrf_of(page)
    first = web.post(f"/jobs/{job_id}/approve", data={"csrf": token})
    assert first.status_code == 303 and first.headers["location"] == f"/jobs/{job_id}?note=approved"
    again = web.post(f"/jobs/{job_id}/approve", data={"csrf": token})
    assert again.headers["location"] == f"/jobs/{job_id}?note=twice"
    assert "acted on once" in web.get(again.headers["location"]).text
    assert nodes.wait("host", job_id, "running")["status"] == "running"  # every party signed; started once
    assert nodes.runners["host"].started == [job_id]
    late = web.post(f"/jobs/{job_id}/approve", data={"csrf": csrf_of(page, 1)})  # a fresh form, job not pending
    assert late.status_code == 409 and "not waiting for approval" in late.text

    other = pending_job(nodes)
    form = web.get("/approvals").text
    assert web.post(f"/jobs/{other}/refuse", data={"csrf": csrf_of(form, 1), "reason": " "}).status_code == 409
    refused = web.post(f"/jobs/{other}/refuse", data={"csrf": csrf_of(web.get('/approvals').text, 1),
                                                      "reason": "not this quarter"})
    assert refused.headers["location"].endswith("note=refused")
    assert "not this quarter" in nodes.wait("host", other, "refused")["reason"]


def test_the_approvals_page_shows_what_a_job_charges_each_members_daily_ids_and_what_is_left(tmp_path):
    """An approver saw the ids budget nowhere: approving a job over it was refused, with no hint beforehand."""
    nodes = local_nodes(federation(tmp_path, guest={"max_peer_ids_per_day": 75_000}))
    try:
        assert len(pd.read_csv(tmp_path / "data" / "guest.csv")) == 500  # the job charges 100 x 500 ids
        web = board(nodes.coordinators["guest"])
        first = pending_job(nodes)
        assert budget_row(web.get("/approvals").text) == (
            "75000", "50,000 ids from each of host; left today: host 75,000", "yes")
        nodes.coordinators["guest"].approve(first)
        pending_job(nodes)
        assert budget_row(web.get("/approvals").text) == (
            "75000", "50,000 ids from each of host; left today: host 25,000", "NO")
    finally:
        nodes.stop()


def budget_row(page: str) -> tuple[str, ...]:
    return re.search(r"<tr><td>max_peer_ids_per_day</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", page).groups()


def test_a_finished_jobs_pages_show_its_steps_results_and_audit(nodes):
    job_id = pending_job(nodes)
    guest = nodes.coordinators["guest"]
    guest.approve(job_id)
    nodes.wait("guest", job_id, "running")
    run = write_run(guest, job_id)
    guest.job_done(job_id, "finished", None)
    web = board(guest)
    page = web.get(f"/jobs/{job_id}").text
    assert 'data-status="finished"' in page and "sse-connect" not in page  # a final job needs no stream
    assert page.count('data-state="done"') == 3 and "1.0 s" in page and "epoch 2 of 2" in page
    results = web.get(f"/jobs/{job_id}/results").text
    assert "ROC curve" in results and '<td>auc</td><td>0.9000</td>' in results
    roc = json.loads(results.split('id="roc-data">')[1].split("</script>")[0])
    assert len(roc["fpr"]) == len(roc["tpr"]) > 2 and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
    assert results.index("age") < results.index("income")  # own features, largest weight first
    audit = web.get(f"/jobs/{job_id}/audit").text
    sent = sum(json.loads(line)["bytes"] for line in (run / "audit.jsonl").read_text().splitlines()
               if json.loads(line)["direction"] == "send")
    assert f'data-bytes="{sent}"' in audit and sent == 6300
    assert "psi/ecdh/guest-points" in audit and "hetero-linear/masked" in audit and "never its content" in audit
    assert '<td data-bytes="6000">' in audit and '<td data-bytes="5300">' in audit  # to the host; in train
    stream = web.get(f"/jobs/{job_id}/live").text
    assert stream.startswith("event: state\n") and 'data-status="finished"' in stream and "event: end" in stream


def test_a_running_job_page_follows_the_stream_and_unknown_jobs_are_404_pages(nodes):
    job_id = pending_job(nodes)
    web = board(nodes.coordinators["guest"])
    page = web.get(f"/jobs/{job_id}").text
    assert f'sse-connect="/jobs/{job_id}/live"' in page and 'sse-close="end"' in page
    missing = web.get("/jobs/0123456789abcdef")
    assert missing.status_code == 404 and "<h1>404: not found</h1>" in missing.text
    assert web.get("/jobs/0123456789abcdef/audit").status_code == 404
    assert web.get("/v1/jobs/0123456789abcdef").json()["detail"].startswith("no job")  # the API stays JSON


def test_ledger_and_serving_pages_read_this_nodes_files(nodes):
    guest = nodes.coordinators["guest"]
    web = board(guest)
    assert "holds no ledger yet" in web.get("/ledger").text
    guest.store.add_version("credit-v1", 1, "0123456789abcdef")
    (guest.config.store / "predictions.jsonl").write_text("".join(
        json.dumps({"time": 1.0, "model": "credit-v1", "rows": 1, "outcome": "served", "ms": ms}) + "\n"
        for ms in range(1, 101)))
    page = web.get("/serving").text
    assert "credit-v1" in page and "<td>100</td>" in page and "50.5 ms" in page and "99.0 ms" in page
    assert "the last 4.0 MiB of each serving log" in page


def test_the_federation_page_shows_the_certificate_and_which_members_answer(nodes, monkeypatch):
    """An operator saw a member's node was down only by proposing a job and waiting for it to fail."""
    guest = nodes.coordinators["guest"]
    web = board(guest)
    page = web.get("/federation").text
    assert 'href="/federation"' in page and 'hx-get="/federation/peers"' in page
    assert re.search(r'id="certificate" class="ok">This node.s certificate is valid until 20\d\d-\d\d-\d\d \(36\d days\)\.',
                     page), page
    monkeypatch.setattr(guest, "answers", lambda member, timeout: member == "host")
    peers = web.get("/federation/peers").text
    row = {member: re.search(f'id="peer-{member}">(.*?)</tr>', peers).group(1) for member in ("host", "arbiter")}
    assert ">answers<" in row["host"] and ">no answer<" in row["arbiter"], peers
    assert "guest" not in peers.split("<tbody>")[1]  # the node does not ping itself

    redate(guest.config.keys, "guest", starts_in_days=-350, ends_in_days=12.5, signer=ec.generate_private_key(ec.SECP256R1()))
    late = web.get("/federation").text
    assert re.search(r'id="certificate" class="error">.*\(12 days\): ask .*>isthmus ca sign --renew<', late), late

    # renewed and installed, but the node presents the certificate it read at start until it restarts
    monkeypatch.setattr(guest, "certificate", load_certificate(guest.config.keys / "guest" / "cert.pem", "served"))
    redate(guest.config.keys, "guest", starts_in_days=-1, ends_in_days=400.5, signer=ec.generate_private_key(ec.SECP256R1()))
    renewed = web.get("/federation").text
    assert re.search(r'id="certificate" class="error">.*\(12 days\); a renewed certificate, valid until '
                     r'20\d\d-\d\d-\d\d, is installed: restart this node to present it\.', renewed), renewed
    monkeypatch.setattr("isthmus.node.client.httpx.Client", lambda base_url, headers, timeout: web)
    status = CliRunner().invoke(node_app, ["status", "--no-peers", "--node", "http://127.0.0.1:1"])
    assert status.exit_code == 0 and re.search(r"\(12 days\)\na renewed certificate \(valid until 20\d\d-\d\d-\d\d\) "
                                               r"is installed: restart the node to present it", status.stdout), status.stdout


def test_the_serving_page_reads_only_the_end_of_logs_that_grow_without_end(nodes, monkeypatch):
    """A million logged predictions took the page 5 s and the node 1.2 GB: it reads the logs' last 4 MiB."""
    guest = nodes.coordinators["guest"]
    guest.store.add_version("credit-v1", 1, "0123456789abcdef")
    line = json.dumps({"time": 1.0, "model": "credit-v1", "rows": 1, "outcome": "served", "ms": 1000}) + "\n"
    recent = "".join(json.dumps({"time": 2.0, "model": "credit-v1", "rows": 1, "outcome": "served", "ms": ms}) + "\n"
                     for ms in (5, 7, 9))
    (guest.config.store / "predictions.jsonl").write_text(line * 1000 + recent)
    monkeypatch.setattr("isthmus.node.board.pages.RECENT_LOG_BYTES", len(recent) + 10)
    page = board(guest).get("/serving").text
    assert "<td>3</td>" in page and "7.0 ms" in page and "1000.0 ms" not in page


def test_a_failed_job_names_the_step_and_party_that_failed(nodes):
    job_id = pending_job(nodes)
    guest = nodes.coordinators["guest"]
    guest.approve(job_id)
    nodes.wait("guest", job_id, "running")
    run = write_run(guest, job_id)
    (run / "events.jsonl").write_text("".join(json.dumps({"time": 1.0 + i, "party": "guest", **e}) + "\n" for i, e in
                                              enumerate([{"step": "intersect", "status": "running"},
                                                         {"step": "intersect", "status": "done"},
                                                         {"step": "train", "status": "running"},
                                                         {"step": "train", "status": "failed",
                                                          "error": "host closed the connection"}])))
    guest.job_done(job_id, "failed", "step train failed: host closed the connection")
    page = board(guest).get(f"/jobs/{job_id}").text
    failure = page.split('id="failure">')[1].split("</p>")[0]
    assert "<strong>train</strong> failed at <strong>guest</strong>: host closed the connection" in failure
    assert 'data-status="failed"' in page and "<details open>" in page  # the log tail is shown
    assert 'data-step="evaluate" data-state="waiting"' in page


def test_multiclass_results_show_a_confusion_matrix_and_regression_its_residuals(nodes):
    job_id = pending_job(nodes)
    guest = nodes.coordinators["guest"]
    run = write_run(guest, job_id)
    pd.DataFrame({"id": range(4), "label": ["a", "b", "c", "c"], "score_0": [0.8, 0.1, 0.1, 0.6],
                  "score_1": [0.1, 0.8, 0.1, 0.2], "score_2": [0.1, 0.1, 0.8, 0.2]}).to_csv(run / "predictions.csv")
    (run / "metrics.json").write_text(json.dumps({"task": "multiclass", "metrics": {"accuracy": 0.75}}))
    web = board(guest)
    page = web.get(f"/jobs/{job_id}/results").text
    table = page.split('id="confusion">')[1].split("</table>")[0]
    assert "<th>c</th><td>1</td><td>0</td><td>1</td>" in table and "roc-chart" not in page
    pd.DataFrame({"id": range(3), "label": [1.0, 2.0, 4.0], "score": [1.5, 2.0, 3.0]}).to_csv(run / "predictions.csv")
    (run / "metrics.json").write_text(json.dumps({"task": "regression", "metrics": {"rmse": 0.6}}))
    page = web.get(f"/jobs/{job_id}/results").text
    residuals = json.loads(page.split('id="residual-data">')[1].split("</script>")[0])
    assert residuals == {"x": [1.5, 2.0, 3.0], "y": [-0.5, 0.0, 1.0]}


def test_a_tree_models_part_shows_the_split_gain_of_this_partys_own_features_only(nodes):
    job_id = pending_job(nodes)
    run = write_run(nodes.coordinators["guest"], job_id)
    (run / "model.json").write_text(json.dumps({"feature_names": ["income", "age"], "feature_importance": {
        "guest": {"split_count": [3, 9], "gain": [1.25, 7.5]}, "host": {"split_count": [4], "gain": [99.0]}}}))
    table = board(nodes.coordinators["guest"]).get(f"/jobs/{job_id}/results").text.split('id="model-part">')[1]
    assert table.index("<td>age</td><td>+7.5000</td>") < table.index("<td>income</td><td>+1.2500</td>")
    assert "99" not in table.split("</table>")[0]


def test_the_federation_page_and_status_name_unpinned_members_and_a_re_key_under_way(nodes, monkeypatch):
    """A federation file from before the TLS pins protects no one, and a re-key half done is easily forgotten."""
    guest = nodes.coordinators["guest"]
    web = board(guest)
    assert 'id="pins"' not in web.get("/federation").text  # every member's key pinned
    federation = guest.config.keys / "federation.json"
    doc = json.loads(federation.read_text())
    del doc["tls_keys"]["host"]
    federation.write_text(json.dumps(doc))
    rekey_party_keys(guest.config.keys, "guest")
    page = web.get("/federation").text
    assert re.search(r'id="pins" class="error">federation.json pins no TLS key for host: ', page), page
    assert 'id="rekey" class="error">A re-key waits for its certificate' in page
    monkeypatch.setattr("isthmus.node.client.httpx.Client", lambda base_url, headers, timeout: web)
    status = CliRunner().invoke(node_app, ["status", "--no-peers", "--node", "http://127.0.0.1:1"])
    assert status.exit_code == 0 and "federation.json pins no TLS key for host: " in status.stdout, status.stdout
    assert "a re-key waits for its certificate" in status.stdout
