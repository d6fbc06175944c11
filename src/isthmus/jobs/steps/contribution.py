"""The `contribution` step: each party's Shapley value for the job's model, its share and its reward.

Vertical jobs (``hetero_lr``, ``hetero_linr``): the guest values coalitions of feature sets by
training each one federatedly (:mod:`isthmus.incentive.vertical`). Horizontal jobs (``homo_lr``,
``homo_linr``): the aggregator values clients from their per-round updates, which it must see in the
clear (:mod:`isthmus.incentive.horizontal`); so these jobs must opt in with ``reveal_updates: true``,
which turns secure aggregation off. The measuring party sends the report to every other party; each
keeps ``contribution.json``, and a later `record` step puts the report in every party's ledger.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import numpy as np

from isthmus.errors import ConfigError, ProtocolError
from isthmus.incentive.contribution import ContributionReport, coalition_key
from isthmus.incentive.horizontal import UpdateTap, gtg_report
from isthmus.incentive.presence import send_to_present
from isthmus.incentive.shapley import leave_one_out
from isthmus.incentive.vertical import Federation, GuestGame, measure, serve_arbiter, serve_host
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec, Step
from isthmus.jobs.steps.horizontal import aggregator_of
from isthmus.jobs.steps.record import coordinator
from isthmus.ml.metrics import METRICS, evaluate
from isthmus.algorithms.hetero_linear import LinearConfig

REPORT = "contribution/report"
VERTICAL_MODELS = ("hetero_lr", "hetero_linr")
HORIZONTAL_MODELS = ("homo_lr", "homo_linr")
#: Metrics a contribution can be measured on: those where more is better.
HIGHER_IS_BETTER = ("auc", "ks", "accuracy", "precision", "recall", "f1", "macro_f1", "r2")
#: Default players up to which every coalition is valued: a vertical coalition costs a federated training,
#: a horizontal one an evaluation per round (for 10 clients, 1024 per round: about as many as sampling takes).
EXACT_UP_TO = {"vertical": 6, "horizontal": 10}
_TAP = "contribution/update-tap"


@dataclass(frozen=True)
class ContributionOptions:
    budget: float = 100.0  # split among the parties in proportion to their (floored) values
    metric: str | None = None  # default: auc (binary), accuracy (multiclass), r2 (regression)
    exact_up_to: int | None = None  # players valued over every coalition; default: EXACT_UP_TO of the job's kind
    tolerance: float = 0.01  # sampling stops when every standard error <= tolerance * |v(N) - v(empty)|
    max_permutations: int = 100
    truncation: float = 0.0  # GTG-Shapley's within-order truncation (0: off)
    seed: int = 0
    reveal_updates: bool = False  # horizontal jobs: consent to the aggregator seeing every client's update

    @classmethod
    def parse(cls, options: dict) -> ContributionOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"contribution: unknown options {unknown}; known: {sorted(known)}")
        settings = cls(**options)
        checks = {
            "budget": _number(settings.budget) and settings.budget >= 0,
            "exact_up_to": settings.exact_up_to is None or type(settings.exact_up_to) is int
            and 1 <= settings.exact_up_to <= 12,
            "tolerance": _number(settings.tolerance) and settings.tolerance > 0,
            "max_permutations": type(settings.max_permutations) is int and settings.max_permutations >= 1,
            "truncation": _number(settings.truncation) and 0 <= settings.truncation < 1,
            "seed": type(settings.seed) is int,
            "reveal_updates": isinstance(settings.reveal_updates, bool),
            "metric": settings.metric is None or settings.metric in HIGHER_IS_BETTER,
        }
        bad = sorted(name for name, ok in checks.items() if not ok)
        if bad:
            raise ConfigError(f"contribution: invalid values for {bad}; metric must be one of {HIGHER_IS_BETTER}")
        return settings

    def metric_for(self, task: str) -> str:
        from isthmus.jobs.parity import PRIMARY_METRIC  # not at the top: parity imports the runner, which imports us

        metric = self.metric or PRIMARY_METRIC[task]
        if metric not in METRICS[task]:
            raise ConfigError(f"contribution: metric {metric!r} does not apply to a {task} model")
        return metric

    def shapley_options(self, kind: str) -> dict:
        return {"exact_up_to": self.exact_up_to or EXACT_UP_TO[kind], "tolerance": float(self.tolerance),
                "max_permutations": self.max_permutations, "truncation": float(self.truncation), "seed": self.seed}


def prepare(ctx: PartyContext, options: dict) -> None:
    """Before any step: check the job can be measured, and let horizontal training show its updates."""
    settings = ContributionOptions.parse(options)
    train = _train_step(ctx.spec)
    model = train.options.get("model")
    if model in VERTICAL_MODELS:
        if train.options.get("fit_intercept", True) is not True:
            raise ConfigError("contribution needs fit_intercept: true (a coalition without the guest's features "
                              "still has the guest's intercept)")
    elif model in HORIZONTAL_MODELS:
        _reveal_updates(ctx, train, settings)
    else:
        raise ConfigError(f"contribution: models {VERTICAL_MODELS + HORIZONTAL_MODELS} can be measured, "
                          f"not {model!r}")


def run(ctx: PartyContext, options: dict) -> None:
    settings = ContributionOptions.parse(options)
    lead = coordinator(ctx.spec)
    vertical = _train_step(ctx.spec).options.get("model") in VERTICAL_MODELS
    if ctx.party == lead:
        report = _measure_vertical(ctx, settings) if vertical else _measure_horizontal(ctx, settings)
        send_to_present(ctx.channel, {n: p.role for n, p in ctx.spec.parties.items()}, REPORT, report.to_dict())
    else:
        if vertical:
            _serve_vertical(ctx)
        try:
            report = ContributionReport.from_dict(ctx.channel.recv(lead, REPORT))
        except ValueError as exc:
            raise ProtocolError(f"bad contribution report: {exc}", peer=lead, tag=REPORT) from None
    ctx.state["contribution"] = report.to_dict()
    ctx.write_json("contribution.json", report.to_dict())
    ctx.events.emit(step="contribution", method=report.method, metric=report.metric,
                    shares=" ".join(f"{party}:{share:.3f}" for party, share in sorted(report.shares.items())))


# --- vertical jobs -------------------------------------------------------------------------------


def _federation(spec: JobSpec) -> Federation:
    return Federation(guest=spec.one("guest"), hosts=spec.with_role("host"), arbiter=spec.one("arbiter"))


def _trained(ctx: PartyContext):
    trained = ctx.state.get("trained")
    if trained is None:
        raise ConfigError("contribution needs a train step before it")
    return trained


def _measure_vertical(ctx: PartyContext, settings: ContributionOptions) -> ContributionReport:
    trained = _trained(ctx)
    task, rows = trained.task, trained.evaluation_rows
    metric = settings.metric_for(task)
    labels = ctx.table.label
    y_true = np.searchsorted(trained.classes, labels[rows]) if task == "multiclass" else labels[rows]

    def grand_scores(channel) -> np.ndarray:
        scores = trained.scores(channel, rows)
        trained.finish(channel)
        return scores

    game = GuestGame(_federation(ctx.spec), trained.part.config, trained.X, labels, rows,
                     metric=lambda scores: evaluate(task, y_true, scores, metrics=[metric])[metric],
                     grand_scores=grand_scores)
    result = measure(ctx.channel, game, **settings.shapley_options("vertical"),
                     progress=lambda coalition, value: ctx.events.emit(
                         step="contribution", coalition=coalition_key(coalition) or "(none)", value=round(value, 6)))
    players, known = game.federation.players, result.coalition_values
    complete = all(frozenset(players) - {p} in known for p in players)  # always when exact; a sample may lack some
    loo = leave_one_out(players, known.__getitem__) if complete else None
    return ContributionReport.from_shapley(result, metric=metric, budget=float(settings.budget), leave_one_out=loo)


def _serve_vertical(ctx: PartyContext) -> None:
    federation = _federation(ctx.spec)
    if ctx.role == "arbiter":
        options = {k: v for k, v in _train_step(ctx.spec).options.items() if k not in ("model", "scale", "task")}
        serve_arbiter(ctx.channel, federation, config=LinearConfig.from_dict(options))
        return
    trained = _trained(ctx)
    serve_host(ctx.channel, federation, config=trained.part.config, features=trained.X, serve_trained=trained.serve)


# --- horizontal jobs -----------------------------------------------------------------------------


def _reveal_updates(ctx: PartyContext, train: Step, settings: ContributionOptions) -> None:
    """Horizontal contribution needs each client's update: only with consent, and without secure aggregation."""
    aggregator = aggregator_of(ctx.spec)
    if ctx.spec.party(aggregator).data is None:
        raise ConfigError(f"contribution: the aggregator {aggregator!r} needs held-out rows ('data') to value "
                          "the clients' updates on")
    if train.options.get("secure_aggregation", True):
        if not settings.reveal_updates:
            raise ConfigError("contribution in a horizontal job shows the aggregator every client's update, which "
                              "secure aggregation hides: set `reveal_updates: true` in the contribution step to "
                              "consent (it turns secure aggregation off), or leave the step out")
        plain = Step(train.name, {**train.options, "secure_aggregation": False})
        ctx.spec = dataclasses.replace(ctx.spec, steps=[plain if s is train else s for s in ctx.spec.steps])
        ctx.events.emit(step="contribution", status="secure aggregation off: the aggregator sees each update")
    if ctx.party == aggregator:
        ctx.channel = ctx.state[_TAP] = UpdateTap(ctx.channel)


def _measure_horizontal(ctx: PartyContext, settings: ContributionOptions) -> ContributionReport:
    trained = _trained(ctx)
    held_out, model = trained.evaluation, trained.model
    metric = settings.metric_for(model.task)

    def utility(parameters) -> float:
        return evaluate(model.task, held_out.label, model.predict(parameters, held_out.features), metrics=[metric])[metric]

    return gtg_report(ctx.state[_TAP].rounds(), utility, final=trained.parameters, metric=metric,
                      budget=float(settings.budget), players=ctx.spec.with_role("client"),
                      **settings.shapley_options("horizontal"))


def _train_step(spec: JobSpec) -> Step:
    train = spec.step("train")
    if train is None:
        raise ConfigError("contribution needs a train step")
    return train


def _number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
