"""The `selftest` step: an encrypted sum across three processes, proving keys, TLS and codec work.

The arbiter sends its public key; guest and host encrypt random vectors; the host sends its
ciphertexts to the guest, which adds its own and forwards the sum; the arbiter decrypts it and
checks it against the plaintext sum (sent in clear: the data are random, made for this test).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from isthmus.algorithms.base import KeyBits
from isthmus.errors import IsthmusError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.kind import StepKind, parse_with
from isthmus.options import Options


class SelftestOptions(Options):
    size: int = Field(1000, ge=1, le=1_000_000)
    key_bits: KeyBits = 2048


def run(ctx: PartyContext, options: SelftestOptions) -> None:
    from isthmus.crypto.paillier import generate_keypair

    size = options.size
    channel, spec = ctx.channel, ctx.spec
    guest, host, arbiter = spec.one("guest"), spec.one("host"), spec.one("arbiter")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if ctx.role == "arbiter":
        public_key, private_key = generate_keypair(options.key_bits)
        timings["keygen_s"] = time.perf_counter() - start
        channel.broadcast([guest, host], "selftest/key", public_key)
        encrypted_sum = channel.recv(guest, "selftest/sum")
        expected = channel.recv(guest, "selftest/expected")
        t = time.perf_counter()
        total = private_key.decrypt(encrypted_sum)
        timings["decrypt_s"] = time.perf_counter() - t
        if not np.allclose(total, expected, atol=1e-6):
            raise IsthmusError("selftest: the decrypted sum differs from the plaintext sum")
        ctx.events.emit(step="selftest", check="decrypted sum matches", values=size, **timings)
        return
    public_key = channel.recv(arbiter, "selftest/key")
    values = np.random.default_rng().normal(size=size)
    t = time.perf_counter()
    encrypted = public_key.encrypt(values)
    timings["encrypt_s"] = time.perf_counter() - t
    if ctx.role == "host":
        channel.send(guest, "selftest/vector", encrypted)
        channel.send(guest, "selftest/plain", values)
    else:
        t = time.perf_counter()
        total = channel.recv(host, "selftest/vector") + encrypted
        timings["add_s"] = time.perf_counter() - t
        channel.send(arbiter, "selftest/sum", total)
        channel.send(arbiter, "selftest/expected", channel.recv(host, "selftest/plain") + values)
    ctx.events.emit(step="selftest", values=size, **timings)


STEP = StepKind("selftest", parse_with(SelftestOptions), run)
