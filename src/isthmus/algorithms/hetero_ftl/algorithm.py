"""``hetero_ftl``: secure federated transfer learning (Liu, Kang, Xing, Chen and Yang, arXiv 1812.03337).

A guest with labels and a host without them share few rows and no columns. Each maps its rows into a
common d-dimensional representation with its own network; over the shared rows they minimise the
Taylor-approximated logistic loss of ``z = Phi . u_B`` (``Phi`` summarising all the guest's labelled
rows) plus a gamma-weighted alignment of the two representations, exchanging only terms encrypted
under the sender's own Paillier key and masked gradients (``exchange.py``, ``terms.py``). The guest adds its
own logistic loss of the same predictor on all its labelled rows (``supervised.py``, no message), so
that u_A, the target the host aligns to on the shared rows, carries what all its labels know. The host then
labels its rows the guest does not have: it writes ``predictions.csv``, and nobody else sees them.

How it fits the contract: unlike a vertical model, FTL's output is not a guest that scores aligned
rows. The guest's part is its network and ``Phi``; the host's part its network; neither is a
``GuestPart``/``HostPart``, so `evaluate` passes over them (the host's predictions are its own
output, compared with held-back truth by whoever has it, e.g. ``isthmus demo ftl``).

Rows: FTL trains on *all* of the guest's labelled rows (they shape ``Phi``) and labels the host's
*non-shared* rows, so the job's `intersect` must not narrow the tables. It says
``keep_all_rows: true`` and records the shared rows' positions (``Party.overlap``, in the order both
parties agreed) instead: the least invasive change, since PSI itself, its messages and what each party
learns stay exactly those of every other vertical job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.algorithms.base import Algorithm, Part, Party, Roster, labels_to_hosts, representations_to_guest
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.algorithms.registry import register
from isthmus.errors import ConfigError


@dataclass
class FtlPart(Part):
    """One party's network (weights as lists, its own standardiser) and what else it keeps."""

    role: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": HeteroFtl.name, "role": self.role, **self.state}


class HeteroFtl(Algorithm):
    name = "hetero_ftl"
    family = "vertical"
    imports = ("torch",)
    roles = {"guest": (1, 1), "host": (1, 1)}
    Options = FtlOptions
    unevaluable = ("its output is the host's predictions.csv, scores for the host's rows the guest never had; "
                   "compare them with held-back truth where that is kept")
    discloses = {
        "guest": labels_to_hosts("the host's weight gradients, over the epochs, give it the shared rows' labels"),
        "host": representations_to_guest("the guest's weight gradients, over the epochs, give it the host's "
                                         "representation of each shared row, which tells much of its columns"),
    }

    def check(self, roster: Roster, options: FtlOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        if options.protection == "plain" and not allow_plaintext:
            raise ConfigError("protection: plain sends representations and gradients in the clear: "
                              "benchmark_only_plaintext only")

    def fit(self, party: Party, options: FtlOptions) -> Part:
        if party.role == "guest":
            from isthmus.algorithms.hetero_ftl.guest import fit_guest

            return FtlPart("guest", fit_guest(party, options))
        from isthmus.algorithms.hetero_ftl.host import fit_host

        return FtlPart("host", fit_host(party, options))

    def load(self, role: str, model: dict[str, Any]) -> Part:
        if model.get("model") != self.name or model.get("role") != role:
            raise ConfigError(f"not a {self.name} {role} part")
        return FtlPart(role, {k: v for k, v in model.items() if k not in ("model", "role")})


register(HeteroFtl())
