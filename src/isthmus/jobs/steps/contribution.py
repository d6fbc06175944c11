"""The `contribution` step: each party's Shapley value for the job's model, its share and its reward.

How a model's parties are valued is the algorithm's declaration (``Algorithm.contribution``):
"coalitions" (vertical) retrains the job's algorithm on each coalition's columns
(:mod:`isthmus.incentive.vertical`); "rounds" (horizontal) values the clients from each round's
updates (:mod:`isthmus.incentive.horizontal`), which the aggregator must see in the clear, so such a
job must consent with ``reveal_updates: true``, and the plan then turns secure aggregation off
(:func:`isthmus.jobs.plan.make_plan` says so in the run log). The measuring party sends the report to
every other party; each keeps ``contribution.json``, and a later `record` step puts it on the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from isthmus.algorithms.base import GuestPart, HostPart
from isthmus.errors import ConfigError, ProtocolError
from isthmus.incentive.contribution import ContributionReport, coalition_key
from isthmus.incentive.horizontal import gtg_report
from isthmus.incentive.presence import send_to_present
from isthmus.incentive.shapley import leave_one_out
from isthmus.incentive.vertical import Game, GuestGame, measure, serve
from isthmus.jobs.context import PartyContext, Trained
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.kind import StepKind
from isthmus.ml.metrics import METRICS, PRIMARY_METRIC, evaluate
from isthmus.options import Options

REPORT = "contribution/report"
#: Metrics a contribution can be measured on: those where more is better.
HIGHER_IS_BETTER = ("auc", "ks", "accuracy", "precision", "recall", "f1", "macro_f1", "r2")
#: Default players up to which every coalition is valued: a vertical coalition costs a federated training,
#: a horizontal one an evaluation per round (for 10 clients, 1024 per round: about as many as sampling takes).
EXACT_UP_TO = {"coalitions": 6, "rounds": 10}


class ContributionOptions(Options):
    budget: float = Field(100.0, ge=0)  # split among the parties in proportion to their (floored) values
    metric: Literal[HIGHER_IS_BETTER] | None = None  # type: ignore[valid-type]  # default: the task's primary
    exact_up_to: int | None = Field(None, ge=1, le=12)  # players valued over every coalition
    tolerance: float = Field(0.01, gt=0)  # sampling stops when every standard error <= tolerance * |v(N) - v({})|
    max_permutations: int = Field(100, ge=1)
    truncation: float = Field(0.0, ge=0, lt=1)  # GTG-Shapley's within-order truncation (0: off)
    seed: int = Field(0, ge=0)
    reveal_updates: bool = False  # horizontal jobs: consent to the aggregator seeing every client's update

    def metric_for(self, task: str) -> str:
        metric = self.metric or PRIMARY_METRIC[task]
        if metric not in METRICS[task]:
            raise ConfigError(f"contribution: metric {metric!r} does not apply to a {task} model")
        return metric

    def shapley_options(self, method: str) -> dict[str, Any]:
        return {"exact_up_to": self.exact_up_to or EXACT_UP_TO[method], "tolerance": self.tolerance,
                "max_permutations": self.max_permutations, "truncation": self.truncation, "seed": self.seed}


def parse(raw: Mapping[str, Any], *, spec: JobSpec, where: str) -> ContributionOptions:
    options = ContributionOptions.parse(raw, where=where)
    if options.reveal_updates and spec.roster.with_role("client") and spec.party(spec.roster.aggregator).data is None:
        raise ConfigError(f"{where}: the aggregator {spec.roster.aggregator!r} needs held-out rows ('data') to value "
                          "the clients' updates on")
    return options


def run(ctx: PartyContext, options: ContributionOptions) -> None:
    trained = ctx.trained  # the plan put a train step before this one
    lead = ctx.spec.roster.coordinator
    method = trained.algorithm.contribution
    if ctx.party == lead:
        report = _measure_coalitions(ctx, trained, options) if method == "coalitions" \
            else _measure_rounds(ctx, trained, options)
        send_to_present(ctx.channel, dict(ctx.spec.roster.roles), REPORT, report.to_dict())
    else:
        if method == "coalitions":
            part = trained.part
            table = party_table(ctx) if ctx.spec.party(ctx.party).data else None
            serve(ctx.channel, _game(ctx, trained), table=table,
                  serve_trained=(lambda channel: part.serve(channel, table.features))
                  if isinstance(part, HostPart) else None)
        try:
            report = ContributionReport.from_dict(ctx.channel.recv(lead, REPORT))
        except ValueError as exc:
            raise ProtocolError(f"bad contribution report: {exc}", peer=lead, tag=REPORT) from None
    ctx.state["contribution"] = report.to_dict()
    ctx.write_json("contribution.json", report.to_dict())
    ctx.events.emit(step="contribution", method=report.method, metric=report.metric,
                    shares=" ".join(f"{party}:{share:.3f}" for party, share in sorted(report.shares.items())))


def _game(ctx: PartyContext, trained: Trained, options: Options | None = None) -> Game:
    """The coalitions' game, played with the job's options unless ``options`` (the guest's) are given."""
    return Game(ctx.spec.roster, trained.algorithm, options or trained.options, ctx.run_dir)


def _measure_coalitions(ctx: PartyContext, trained: Trained, options: ContributionOptions) -> ContributionReport:
    part = trained.part
    if not isinstance(part, GuestPart):
        raise ConfigError(f"contribution is measured by the guest, which holds the labels; {ctx.party!r} has none")
    table, rows = party_table(ctx), part.evaluation_rows
    metric = options.metric_for(part.task)
    y_true = part.targets(table.label[rows])

    def grand_scores(channel) -> np.ndarray:
        scores = part.predict(channel, table.features, rows)
        part.finish(channel)
        return scores

    options_for_coalitions = trained.algorithm.coalition_options(trained.options, part)
    game = GuestGame(_game(ctx, trained, options_for_coalitions), table, rows,
                     metric=lambda scores: evaluate(part.task, y_true, scores, metrics=[metric])[metric],
                     grand_scores=grand_scores)
    result = measure(ctx.channel, game, **options.shapley_options("coalitions"),
                     progress=lambda coalition, value: ctx.events.emit(
                         step="contribution", coalition=coalition_key(coalition) or "(none)", value=round(value, 6)))
    players, known = game.game.players, result.coalition_values
    complete = all(frozenset(players) - {p} in known for p in players)  # always when exact; a sample may lack some
    loo = leave_one_out(players, known.__getitem__) if complete else None
    return ContributionReport.from_shapley(result, metric=metric, budget=options.budget, leave_one_out=loo)


def _measure_rounds(ctx: PartyContext, trained: Trained, options: ContributionOptions) -> ContributionReport:
    part = trained.part
    held_out = party_table(ctx).columns(part.feature_names)
    metric = options.metric_for(part.task)

    def utility(parameters) -> float:
        scores = part.predict_with(parameters, held_out.features)
        return evaluate(part.task, held_out.label, scores, metrics=[metric])[metric]

    return gtg_report(part.rounds, utility, final=part.parameters, metric=metric, budget=options.budget,
                      players=ctx.spec.with_role("client"), **options.shapley_options("rounds"))


STEP = StepKind("contribution", parse, run, after="train")
