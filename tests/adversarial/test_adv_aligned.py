"""A host answering the alignment check with anything but a 32-byte digest is named, and nothing trains."""

from __future__ import annotations

import pytest
from test_aligned import vertical

from isthmus.errors import ProtocolError
from isthmus.jobs.runner import run_party
from isthmus.jobs.steps.aligned import TAG
from isthmus.transport.local import LocalHub


@pytest.mark.parametrize("digest", [b"short", "a" * 32, 10**80, [b"x" * 32]])
def test_a_malformed_digest_is_refused_naming_the_host(tmp_path, digest):
    spec = vertical(tmp_path, ["aligned", {"train": {"model": "hetero_lr"}}])
    hub = LocalHub(["guest", "host", "arbiter"])
    hub.channel("host", spec.name).scoped("0-aligned").send("guest", TAG, digest)
    with pytest.raises(ProtocolError, match="expected a 32-byte digest") as caught:
        run_party(spec, "guest", hub.channel("guest", spec.name), tmp_path / "run" / "guest")
    assert caught.value.peer == "host"
    assert not (tmp_path / "run" / "guest" / "model.json").exists()
