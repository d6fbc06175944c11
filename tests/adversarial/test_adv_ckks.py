"""CKKS ciphertexts and keys from a peer are hostile input (cipher: ckks of hetero_lr).

Every party parses SEAL's bytes against the parameters fixed in isthmus.crypto.ckks, never against
parameters a peer names: oversized, malformed, wrong-parameter, wrong-level or 3-part ciphertexts
and keys are refused with a ProtocolError naming the peer, before any arithmetic runs on them. The
arbiter returns only flooded decryptions, so a party that sends an encryption of values it knows
does not learn the CKKS error term (Li-Micciancio key recovery).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tenseal")

from isthmus.algorithms.hetero_linear import LinearOptions, tags  # noqa: E402
from isthmus.crypto import ckks  # noqa: E402
from isthmus.errors import ProtocolError  # noqa: E402
from isthmus.protocols.inspect import Inspect  # noqa: E402
from test_adv_vertical import HOST_FEATURES, SAFE_ROWS, start_arbiter  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return ckks.generate_keypair()


def refused(obj, public_key, size=3) -> str:
    with pytest.raises(ProtocolError) as error:
        Inspect("host", tags.MASKED).cipher(obj, public_key, size=size)
    assert error.value.peer == "host"
    return str(error.value)


def foreign_ciphertext(bits: list[int], degree: int = 8192) -> bytes:
    """A valid SEAL ciphertext under other CKKS parameters."""
    sa = ckks._seal()
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(degree)
    parms.set_coeff_modulus(sa.CoeffModulus.Create(degree, bits))
    context = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
    generator = sa.KeyGenerator(context)
    public_key = sa.PublicKey()
    generator.create_public_key(public_key)
    plain, ciphertext = sa.Plaintext(), sa.Ciphertext()
    sa.CKKSEncoder(context).encode([1.0, 2.0, 3.0], context.first_parms_id(), 2.0**40, plain)
    sa.Encryptor(context, public_key).encrypt(plain, ciphertext)
    return ckks._save(ciphertext)


def test_malformed_and_oversized_ciphertexts_are_refused(keys):
    public_key, _ = keys
    assert "bytes" in refused({"lengths": [3], "segments": [b"\0" * (ckks.MAX_CIPHERTEXT_BYTES + 1)]}, public_key)
    assert "not a valid SEAL object" in refused({"lengths": [3], "segments": [b"SEAL" + b"\x07" * 500]}, public_key)
    assert "exactly" in refused([b"x"], public_key)
    assert "segments" in refused({"lengths": [5000], "segments": [b"x"]}, public_key, size=5000)
    assert "segments" in refused({"lengths": [1] * 300, "segments": [b"x"] * 300}, public_key, size=300)
    good = public_key.encrypt(np.ones(3)).to_wire()
    assert "expected 4 encrypted values" in refused(good, public_key, size=4)


@pytest.mark.parametrize("bits, degree", [([60, 40, 40, 60], 8192), ([40, 20, 40], 4096), ([60, 50, 48, 60], 16384)],
                         ids=["other-primes", "smaller-ring", "larger-ring"])
def test_ciphertexts_of_other_parameters_are_refused(keys, bits, degree):
    public_key, _ = keys
    assert "not a valid SEAL object" in refused({"lengths": [3], "segments": [foreign_ciphertext(bits, degree)]}, public_key)


def test_ciphertexts_of_unexpected_shape_level_or_scale_are_refused(keys):
    public_key, _ = keys
    _, evaluator = ckks._tools()
    fresh = public_key.encrypt(np.ones(3)).segments[0]
    three_part = ckks._seal().Ciphertext()
    evaluator.multiply(fresh, fresh, three_part)  # no relinearisation: 3 polynomials
    assert "2 polynomials" in refused({"lengths": [3], "segments": [ckks._save(three_part)]}, public_key)
    bottom = ckks._copy(fresh, ckks._parms_id(0))  # level 0: no room left for masks
    assert "level" in refused({"lengths": [3], "segments": [ckks._save(bottom)]}, public_key)
    odd_scale = ckks._copy(fresh)
    odd_scale.scale = 3.0 * ckks.SCALE
    assert "scale" in refused({"lengths": [3], "segments": [ckks._save(odd_scale)]}, public_key)


def test_public_keys_are_parsed_against_the_fixed_parameters(keys):
    public_key, _ = keys
    wire = public_key.to_wire()
    other = ckks._seal()
    with pytest.raises(ValueError, match="exactly"):
        ckks.CkksPublicKey.from_wire({**wire, "secret": b"x"})
    with pytest.raises(ValueError, match="at most"):
        ckks.CkksPublicKey.from_wire({"public": b"\0" * (ckks.MAX_PUBLIC_KEY_BYTES + 1), "galois": b""})
    with pytest.raises(ValueError, match="not a valid SEAL object"):  # a ciphertext is no public key
        ckks.CkksPublicKey.from_wire({"public": foreign_ciphertext([60, 40, 40, 60]), "galois": wire["galois"]})
    generator = other.KeyGenerator(ckks.context())
    with pytest.raises(ValueError, match="not a valid SEAL object"):  # nor is a secret key
        ckks.CkksPublicKey.from_wire({"public": ckks._save(generator.secret_key()), "galois": wire["galois"]})
    few = other.GaloisKeys()
    generator.create_galois_keys([pow(3, 1, 2 * ckks.POLY_DEGREE)], few)
    with pytest.raises(ValueError, match="powers of two"):
        ckks.CkksPublicKey.from_wire({"public": wire["public"], "galois": ckks._save(few)})


def test_the_arbiter_sends_its_public_key_only_and_floods_every_decryption():
    """A host sends encryptions of values it knows instead of its masked gradient: what comes back is
    flooded (noise ~2^-4), not the exact decryption whose error would reveal the secret key."""
    hub, arbiter, wire = start_arbiter(LinearOptions(cipher="ckks"))
    assert set(wire) == {"public", "galois"}  # no secret key crosses
    public_key = ckks.CkksPublicKey.from_wire(wire)
    guest, host = hub.channel("guest"), hub.channel("host")
    known = np.linspace(-1.0, 1.0, HOST_FEATURES)
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    host.send("arbiter", tags.MASKED, public_key.encrypt(known))
    guest.send("arbiter", tags.MASKED, public_key.encrypt(np.zeros(4)))
    errors = [host.recv("arbiter", tags.UNMASKED_RAW) - known, guest.recv("arbiter", tags.UNMASKED_RAW)]
    assert np.std(np.concatenate(errors)) > ckks.HOLDER_FLOOD / 4
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    host.send("arbiter", tags.MASKED, {"lengths": [HOST_FEATURES], "segments": [foreign_ciphertext([60, 40, 40, 60])]})
    error = arbiter.refused()
    assert error.peer == "host" and "not a valid SEAL object" in str(error)


def test_a_compressed_ciphertext_that_inflates_to_256_mib_is_refused_without_inflating(keys):
    """SEAL's own zstd compression: a few KB of frame under a valid header is refused before it inflates."""
    import resource
    import shutil
    import struct
    import subprocess

    if shutil.which("zstd") is None:
        pytest.skip("needs the zstd command to make the frame")
    frame = subprocess.run("head -c 268435456 /dev/zero | zstd -q -c", shell=True, capture_output=True,
                           check=True).stdout  # made outside this process: its peak memory stays what it was
    header = bytes.fromhex("5ea1100403020000") + struct.pack("<Q", 16 + len(frame))  # SEAL 4.x header, zstd
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "not a valid SEAL object" in refused({"lengths": [3], "segments": [header + frame]}, keys[0])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: nothing inflated
