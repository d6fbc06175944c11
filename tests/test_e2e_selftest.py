"""`isthmus selftest`: three real processes over mutual TLS exchange an encrypted sum."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from isthmus.jobs.agreement import TAG as AGREEMENT_TAG

pytestmark = pytest.mark.e2e


def test_selftest_passes_and_audits_every_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "isthmus", "selftest", "--key-bits", "1024", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "selftest passed" in result.stdout
    sent = {party: [json.loads(line) for line in (tmp_path / "run" / party / "audit.jsonl").read_text().splitlines()]
            for party in ("guest", "host", "arbiter")}
    # every message one party sent is one the other received, byte for byte
    sends = sorted((e["tag"], e["bytes"], e["sha256"]) for log in sent.values() for e in log if e["direction"] == "send")
    recvs = sorted((e["tag"], e["bytes"], e["sha256"]) for log in sent.values() for e in log if e["direction"] == "recv")
    assert sends == recvs and len(sends) == 12
    assert sum(tag == AGREEMENT_TAG for tag, _, _ in sends) == 6  # each party told the others the job it runs
    assert str(tmp_path / "run" / "arbiter" / "audit.jsonl") in result.stdout.replace("\n", "")
    assert result.stdout.splitlines()[-1] == f"results: {tmp_path}"
