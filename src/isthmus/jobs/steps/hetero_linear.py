"""Hetero linear and logistic regression as job steps: data in, model part out, per role."""

from __future__ import annotations

import numpy as np

from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import party_table
from isthmus.ml.scaling import Standardizer
from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearConfig
from isthmus.algorithms.hetero_linear.batches import safe_rows_per_feature


def train_logistic(ctx: PartyContext, options: dict):
    return _train(ctx, options, model="hetero_lr")


def train_linear(ctx: PartyContext, options: dict):
    return _train(ctx, options, model="hetero_linr")


def _train(ctx: PartyContext, options: dict, *, model: str):
    options = dict(options)
    scale = bool(options.pop("scale", True))
    if "task" in options and model == "hetero_linr":
        raise ConfigError("hetero_linr is always a regression; drop 'task'")
    spec, channel = ctx.spec, ctx.channel
    guest, hosts, arbiter = spec.one("guest"), spec.with_role("host"), spec.one("arbiter")
    task = "regression" if model == "hetero_linr" else options.pop("task", "binary")
    if options.get("encrypt") is False:
        ctx.spec.require_plaintext_switch(f"train: {model} with encrypt: false (it shows the arbiter every "
                                          "gradient and the hosts the guest's residuals, hence its labels)")
    config = LinearConfig.from_dict({**options, "task": task})
    if config.unsafe_batches:
        ctx.spec.require_plaintext_switch(
            f"train: {model} with batch_rows_per_feature {config.rows_per_feature} (below the safe "
            f"{safe_rows_per_feature(config.precision)} at precision {config.precision}, batches may be small "
            "enough for a host to solve its gradient for the guest's labels)")
    if ctx.role == "arbiter":
        arbiter_part = HeteroLinearArbiter(config)
        arbiter_part.fit(channel, guest=guest, hosts=hosts)
        ctx.write_json("model.json", {"model": model, "role": "arbiter", "rounds_decrypted": arbiter_part.rounds_served})
        return None

    table = party_table(ctx)
    scaler = Standardizer.fit(table.features) if scale else None
    X = scaler.transform(table.features) if scaler else table.features
    saved = {"model": model, "role": ctx.role, "features": table.feature_names,
             "scaler": scaler.to_dict() if scaler else None}
    if ctx.role == "guest":
        if table.label is None:
            raise ConfigError(f"guest {ctx.party!r} needs a 'label' column in its data to train {model}")
        if task == "binary" and len(np.unique(table.label)) > 2:
            task = "multiclass"
        part = HeteroLinearGuest(LinearConfig.from_dict({**options, "task": task}))
        part.fit(channel, X, table.label, hosts=hosts, arbiter=arbiter,
                 progress=lambda record: ctx.events.emit(step="train", **record))
        saved.update(task=task, coef=part.coef_, classes=part.classes_, history=part.history_,
                     intercept_included=part.config.fit_intercept)
        ctx.write_json("model.json", saved)
        return _GuestScorer(part, X, hosts)
    if ctx.role != "host":
        raise ConfigError(f"{model} has no role {ctx.role!r}; it needs a guest, hosts and an arbiter")
    part = HeteroLinearHost(config)
    part.fit(channel, X, guest=guest, arbiter=arbiter)
    saved.update(coef=part.coef_)
    ctx.write_json("model.json", saved)
    return _HostScorer(part, X, guest)


class _GuestScorer:
    """What the `evaluate` step needs from a trained guest: joint scores for chosen aligned rows."""

    def __init__(self, part: HeteroLinearGuest, X: np.ndarray, hosts: list[str]):
        self.part, self.X, self.hosts = part, X, hosts
        self.task = part.config.task
        self.classes = part.classes_
        self.evaluation_rows = part.validation_rows_ if len(part.validation_rows_) else np.arange(len(X))

    def scores(self, channel, rows: np.ndarray) -> np.ndarray:
        return self.part.predict_proba(channel, self.X, hosts=self.hosts, rows=rows)

    def finish(self, channel) -> None:
        self.part.finish(channel, hosts=self.hosts)


class _HostScorer:
    def __init__(self, part: HeteroLinearHost, X: np.ndarray, guest: str):
        self.part, self.X, self.guest = part, X, guest

    def serve(self, channel) -> None:
        self.part.serve_scores(channel, self.X, guest=self.guest)
