"""A party's keyring for secure aggregation, from its key folder: its own signing key and the clients' pinned keys."""

from __future__ import annotations

from pathlib import Path

from isthmus.errors import ConfigError
from isthmus.horizontal.secure_sum import Keyring
from isthmus.transport.keyfiles import check_keys, federation_file, load_pinned_keys, load_signing_key


def keyring_from_folder(keys_dir: Path | None, party: str, clients: list[str]) -> Keyring:
    """The pinned signing keys of the job's clients and, at a client, its own signing key.

    Only the job's clients are trusted to sign keys for a secure sum: not the aggregator, nor any other
    member of the federation.
    """
    if keys_dir is None:
        raise ConfigError(f"party {party!r}: secure aggregation needs the party's key folder (its signing key and "
                          "the federation's pinned keys): run the job with `isthmus run --certs` or `isthmus launch`")
    pinned = load_pinned_keys(federation_file(keys_dir))
    signing_key = None
    if party in clients:
        signing_key = load_signing_key(keys_dir, party)
        check_keys(party, clients, signing_key, pinned)
    elif missing := sorted(set(clients) - set(pinned)):
        raise ConfigError(f"the federation file pins no signing key for {missing}")
    return Keyring({client: pinned[client].public_bytes_raw() for client in clients}, signing_key)
