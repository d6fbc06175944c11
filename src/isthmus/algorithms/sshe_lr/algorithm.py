"""hetero_lr_sshe under the algorithm contract: a guest and any number of hosts, no arbiter.

A model of its own rather than a ``protocol:`` option of hetero_lr: its roles differ (no arbiter), and so do its options (no residual, encrypt or batch floor: nothing is decrypted in the
clear until the end, so no batch size can leak labels) and its threat model (docs/security.md). What
it keeps is hetero_lr's: each party's weights, scored jointly through the same parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.algorithms.base import Algorithm, GuestPart, HostPart, Party, Reference, Task, classifier_task
from isthmus.algorithms.hetero_linear.algorithm import (LinearGuestPart, LinearHostPart, load_part,
                                                        logistic_reference, scaled)
from isthmus.algorithms.hetero_linear.guest import HeteroLinearGuest
from isthmus.algorithms.hetero_linear.host import HeteroLinearHost
from isthmus.algorithms.registry import register
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.ml.scaling import Standardizer


def as_columns(weights: np.ndarray) -> np.ndarray:
    """A party's weights as hetero_lr's (features, models) matrix: one column, or K for a softmax model."""
    return weights[:, None] if weights.ndim == 1 else weights


class HeteroLRSSHE(Algorithm):
    """Logistic regression on secret-shared weights: Paillier under each party's own key (one key pair per
    guest-host pair), the sigmoid on shares by a Fourier series (fourier.py); each party learns only its
    own weights."""

    name = "hetero_lr_sshe"
    family = "vertical"
    roles = {"guest": (1, 1), "host": (1, None)}
    Options = SSHEOptions

    def fit(self, party: Party, options: SSHEOptions) -> GuestPart | HostPart:
        guest, hosts = party.roster.one("guest"), party.roster.with_role("host")
        table = party.labelled_rows() if party.role == "guest" else party.rows()
        scaler = Standardizer.fit(table.features) if options.scale and table.feature_names else None
        X = scaled(scaler, table.features)
        if party.role == "host":
            trained = HeteroLinearHost(options)
            trained.coef_ = as_columns(fit_host(options, party.channel, X, guest=guest))
            return LinearHostPart(self.name, trained, table.feature_names, scaler, guest)
        options = options.model_copy(update={"task": classifier_task(options.task, table.label, self.name)})
        trained = HeteroLinearGuest(options)
        result = fit_guest(options, party.channel, X, table.label, hosts=hosts,
                           progress=lambda record: party.progress(**record))
        trained.coef_, trained.classes_, trained.history_ = as_columns(result.weights), result.classes, result.history
        return LinearGuestPart(self.name, trained, table.feature_names, scaler, hosts, result.evaluation_rows)

    def load(self, role: str, model: dict[str, Any]) -> GuestPart | HostPart:
        return load_part(self.name, self.Options, role, model)

    def reference(self, options: SSHEOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        return logistic_reference(options, task, X_train, y_train, X_eval)


register(HeteroLRSSHE())
