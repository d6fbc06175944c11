"""``isthmus keys`` (run by each party on its own machine) and ``isthmus ca`` (run by the CA operator).

The multi-machine way to join a federation, step by step in README.md: each party makes its own
keys and a certificate request (``keys init``), the CA operator signs the requests and pins each
party's public signing key (``ca init``, ``ca sign``), and each party installs what comes back
(``keys install``); a member whose TLS key may have leaked makes a new one (``keys rekey``). Private
keys never leave the machine they were made on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from isthmus.cli_errors import guard

keys_app = typer.Typer(help="A party's own keys: make them and a certificate request, install the CA's answer.",
                       no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
ca_app = typer.Typer(help="The federation CA: create it, sign the parties' certificate requests.",
                     no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console(soft_wrap=True)  # paths are never broken across lines

PartyOpt = Annotated[str, typer.Option(help="This party's name (a lower-case DNS name), as in the job files.")]
DirOpt = Annotated[Path, typer.Option("--dir", help="This party's certificate folder (what `isthmus run --certs` takes).")]


@keys_app.command("init")
def keys_init(party: PartyOpt, folder: DirOpt = Path("certs")) -> None:
    """Make this party's TLS and signing keys (0600), a certificate request and its public signing key."""
    from isthmus.transport.party_keys import init_party_keys

    made = guard(lambda: init_party_keys(folder, party))
    console.print(f"{party}: private keys in {made.request.parent} (key.pem, signing.key) — they never leave this machine")
    console.print(f"send to the CA operator: {made.request} and {made.signing_pub}")
    console.print(f"public signing key (compare with the federation file): {made.signing_key}")


@keys_app.command("rekey")
def keys_rekey(party: PartyOpt, folder: DirOpt = Path("certs")) -> None:
    """Make a new TLS key (key.next.pem, 0600) and its certificate request, when key.pem may have leaked."""
    from isthmus.transport.party_keys import rekey_party_keys

    made = guard(lambda: rekey_party_keys(folder, party))
    console.print(f"{party}: new TLS key in {made.request.parent / 'key.next.pem'}; key.pem serves until its "
                  "certificate is installed")
    console.print(f"send to the CA operator: {made.request} and {made.signing_pub} (`isthmus ca sign --renew`); "
                  "every member then installs the new federation.json, and this party the certificate "
                  "(`isthmus keys install --cert`), which puts the new key in place: the old one is refused from "
                  "then on")


@keys_app.command("install")
def keys_install(party: PartyOpt, folder: DirOpt = Path("certs"),
                 cert: Annotated[Optional[Path], typer.Option(help="This party's certificate from the CA operator.")] = None,
                 ca: Annotated[Optional[Path], typer.Option(help="The federation CA's certificate (ca.pem).")] = None,
                 federation: Annotated[Optional[Path], typer.Option(
                     help="The federation file (federation.json); install each new copy the CA operator sends.")] = None,
                 ) -> None:
    """Check what the CA operator sent against this party's keys and copy it into the folder."""
    from isthmus.transport.party_keys import install_party_files

    for path in guard(lambda: install_party_files(folder, party, cert=cert, ca=ca, federation=federation)):
        console.print(f"installed {path}")


@ca_app.command("init")
def ca_init(folder: Annotated[Path, typer.Argument(help="The CA operator's folder (keep ca.key offline).")],
            days: Annotated[Optional[int], typer.Option(min=1, help="How long the CA is valid, in days (default: 10 "
                                                                    "years); every certificate it signs ends with it "
                                                                    "at the latest.")] = None) -> None:
    """Create the federation CA (ca.key 0600, ca.pem) and an empty federation file."""
    from isthmus.transport.ca import CA_DAYS, init_ca

    ca_pem = guard(lambda: init_ca(folder, valid_days=days or CA_DAYS))
    console.print(f"CA: {ca_pem} (give it to every party); keep {folder / 'ca.key'} offline")


@ca_app.command("sign")
def ca_sign(request: Annotated[Path, typer.Argument(help="A party's certificate request (request.csr).")],
            ca: Annotated[Path, typer.Option(help="The CA operator's folder (made by `isthmus ca init`).")],
            signing_key: Annotated[Path, typer.Option(help="The party's public signing key file (signing.pub).")],
            out: Annotated[Optional[Path], typer.Option(help="Where to write the certificate "
                                                             "(default: CA/issued/<party>.pem).")] = None,
            days: Annotated[Optional[int], typer.Option(min=1, help="How long the certificate is valid, in days "
                                                                    "(default: 365; at most as long as the CA).")] = None,
            renew: Annotated[bool, typer.Option(help="A member's next certificate, before or after its last one "
                                                     "expires: its signing key must be the pinned one.")] = False,
            ) -> None:
    """Check a party's request, issue its certificate and pin its public signing key in federation.json."""
    from isthmus.transport.ca import PARTY_DAYS, sign_request

    issued = guard(lambda: sign_request(ca, request, signing_key, out=out, valid_days=days or PARTY_DAYS, renew=renew))
    console.print(f"issued {issued.party}'s certificate, valid until {issued.valid_until:%Y-%m-%d}"
                  + (" (when the CA's own certificate ends)" if issued.ends_with_ca else "") + f": {issued.cert}")
    if renew and issued.rekeyed:
        console.print(f"{issued.party} has a new TLS key: send the updated {ca / 'federation.json'} to every member "
                      f"(`isthmus keys install --federation`), then the certificate to {issued.party} (`isthmus keys "
                      "install --cert`, then restart its node): until they install it, the members refuse it")
        return
    if renew:
        console.print(f"send it to {issued.party} (`isthmus keys install --cert`, then restart its node); the other "
                      "members need nothing new")
        return
    console.print(f"send to {issued.party}: {issued.cert} and {ca / 'ca.pem'}; send the updated "
                  f"{ca / 'federation.json'} to every member")
