"""Small hostile messages that cost a receiver its process or gigabytes of memory before decoding was bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import msgpack
import numpy as np
import pytest

from isthmus.errors import ProtocolError
from isthmus.transport import codec

HERE = Path(__file__).parent
ENVELOPES = {"array": 1, "ciphertext array": 2, "public key": 3, "big integer": 4}


def record(code: int, payload: bytes) -> bytes:
    """One ext 32 record, as a hostile peer writes it."""
    return b"\xc9" + len(payload).to_bytes(4, "big") + code.to_bytes(1, "big", signed=True) + payload


def test_10000_nested_envelopes_are_a_protocol_error_not_a_crash():
    """Each envelope level once took a fresh msgpack parse on the C stack: a few hundred killed the process."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from hostile_peer import nested_envelopes
        from isthmus.errors import ProtocolError
        from isthmus.transport import codec
        try:
            codec.decode(nested_envelopes(10_000), peer="host", tag="t")
            print("decoded")
        except ProtocolError as exc:
            print("ProtocolError:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(HERE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the decoding process died with status {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip() == "ProtocolError: wire type 1 inside an envelope (peer='host', tag='t')"


@pytest.mark.parametrize("outer", ["array", "ciphertext array", "public key"])
@pytest.mark.parametrize("inner", list(ENVELOPES))
def test_no_envelope_may_hold_another(outer, inner):
    nested = record(ENVELOPES[inner], b"\x00\x01")
    in_a_list = b"\x92" + msgpack.packb("<f8") + nested  # [dtype, <envelope>]
    in_a_map = b"\x81" + msgpack.packb("n") + nested  # {"n": <envelope>}
    for payload in (nested, in_a_list, in_a_map):
        with pytest.raises(ProtocolError, match=f"wire type {ENVELOPES[inner]} inside an envelope"):
            codec.decode(codec.frame(record(ENVELOPES[outer], payload)))


def _empty_maps(*counts: int) -> bytes:
    """A list of lists of empty maps: one byte per map on the wire, about 70 once decoded."""
    return codec.frame(b"\xdd" + len(counts).to_bytes(4, "big") + b"".join(
        b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n for n in counts
    ))


@pytest.mark.parametrize(
    ("counts", "reason"),
    [((15 << 20,), "exceeds max_array_len"), ((codec.MAX_ELEMENTS // 2,) * 3, f"more than {codec.MAX_ELEMENTS} lists")],
    ids=["one 15 MiB list", "lists each within the length limit"],
)
def test_small_containers_cannot_decode_to_gigabytes(counts, reason):
    message = _empty_maps(*counts)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=reason):
            codec.decode(message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(message) + 150 * codec.MAX_ELEMENTS  # about 70 bytes per element at most; 1.1 GiB before


def test_bulk_data_in_envelopes_is_one_element_each():
    """What protocols send in bulk (arrays, bytes) is far from the element limit, whatever its size."""
    many = [np.arange(1000), b"\x00" * 100_000] * 1000 + [list(range(1000))]
    got = codec.decode(codec.encode(many))
    assert len(got) == 2001 and got[-1] == list(range(1000))
