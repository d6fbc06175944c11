"""Attacks on the board: forged or foreign forms, a rebound DNS name, a missing or expired sign-in, markup
smuggled into a refusal reason."""

from __future__ import annotations

import time

import pytest

from isthmus.node.board.guard import SESSION_COOKIE, SESSION_SECONDS, Guard
from tests.board_helpers import board, csrf_of, pending_job
from tests.node_helpers import federation, local_nodes

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def test_a_form_without_a_valid_token_or_from_another_origin_changes_nothing(nodes):
    job_id = pending_job(nodes)
    web = board(nodes.coordinators["guest"])
    token = csrf_of(web.get("/approvals").text)
    assert web.post(f"/jobs/{job_id}/approve", data={}).status_code == 403
    assert web.post(f"/jobs/{job_id}/approve", data={"csrf": token[:-1] + ("1" if token[-1] == "0" else "0")}).status_code == 403
    assert web.post(f"/jobs/{job_id}/approve", data={"csrf": token},
                    headers={"origin": "http://evil.example"}).status_code == 403
    assert web.post(f"/jobs/{job_id}/approve", data={"csrf": "0" * 32 + "." + "0" * 64}).status_code == 403
    assert nodes.coordinators["guest"].store.job(job_id)["status"] == "pending"
    other_node = board(nodes.coordinators["host"])  # a token is only good on the node that issued it
    assert other_node.post(f"/jobs/{job_id}/approve", data={"csrf": token}).status_code == 403


def test_a_rebound_host_name_is_refused_without_a_token(nodes):
    web = board(nodes.coordinators["guest"])
    assert web.get("/jobs", headers={"host": "attacker.example:80"}).status_code == 421
    assert web.get("/jobs", headers={"host": "127.0.0.1:1"}).status_code == 421  # another port: not this node


def test_with_a_token_the_board_asks_to_sign_in_and_an_expired_session_goes_back(nodes):
    web = board(nodes.coordinators["guest"], token=TOKEN)
    assert web.get("/jobs").headers["location"] == "/signin"
    assert web.get("/v1/jobs").status_code == 401  # the API's rule is unchanged
    form = web.get("/signin").text
    wrong = web.post("/signin", data={"csrf": csrf_of(form), "token": "guess"})
    assert wrong.status_code == 401 and "not this node's token" in wrong.text
    signed = web.post("/signin", data={"csrf": csrf_of(web.get("/signin").text), "token": TOKEN})
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    assert web.get("/jobs").status_code == 200  # the cookie is kept by the client
    web.cookies.clear()  # (a per-request cookies={} did not drop the client's session: httpx merges them)
    assert web.get("/jobs").headers["location"] == "/signin"
    assert web.get("/jobs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200  # the token alone

    guard = Guard(TOKEN, None)
    old = guard.session_for(TOKEN, now=time.time() - SESSION_SECONDS - 1)
    assert not guard.signed_in({}, {SESSION_COOKIE: old})
    forged = f"{int(time.time()) + 3600}.{'0' * 64}"
    assert not guard.signed_in({}, {SESSION_COOKIE: forged})
    assert not Guard("another-token-0123456789", None).signed_in({}, {SESSION_COOKIE: guard.session_for(TOKEN)})


def test_markup_in_a_refusal_reason_is_shown_as_text(nodes):
    job_id = pending_job(nodes)
    web = board(nodes.coordinators["guest"])
    web.post(f"/jobs/{job_id}/refuse", data={"csrf": csrf_of(web.get("/approvals").text, 1),
                                             "reason": "<script>alert(1)</script>"})
    page = web.get(f"/jobs/{job_id}").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    missing = web.get("/jobs/<img src=x onerror=alert(1)>")
    assert missing.status_code == 404 and "<img" not in missing.text
