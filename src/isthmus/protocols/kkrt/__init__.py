"""KKRT16 private set intersection: a batched oblivious PRF from OT extension, for the `intersect` step.

Kolesnikov, Kumaresan, Rosulek, Trieu, "Efficient Batched Oblivious PRF with Applications to Private
Set Intersection", CCS 2016 (KKRT16). The guest is the OPRF receiver: it places each id in one bin
of a cuckoo table (:mod:`.cuckoo`, paper section 5), and obtains one OPRF output per bin through
an IKNP-style OT extension whose rows are pseudo-random codewords (:mod:`.ot_extension`, sections
3-4), started from 512 base OTs on Curve25519 (:mod:`.base_ot`). The host, the OPRF sender, evaluates
the PRF on each of its ids once per hash function and sends those values; equal values mean a shared
id (:mod:`.psi`, section 5).

No maintained Python package implements any of this (libOTe and SecretFlow's psi are C++ built
with CMake/Bazel), so the protocol logic is written here; every primitive comes from a library:
AES (AES-NI) and X25519 from ``cryptography``, BLAKE2b from :mod:`hashlib`, modular arithmetic from
``gmpy2``. Bulk work is numpy over whole arrays; the only per-id Python steps are the BLAKE2b
calls (one per id to digest it, and one per OPRF output), which run at C speed inside hashlib.
"""
