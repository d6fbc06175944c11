"""The `train` step: the model named in the job, trained federatedly; each party stores its own part."""

from __future__ import annotations

from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import hetero_linear, horizontal, secureboost

TRAINERS = {
    "hetero_lr": hetero_linear.train_logistic,
    "hetero_linr": hetero_linear.train_linear,
    "homo_lr": horizontal.train_logistic,
    "homo_linr": horizontal.train_linear,
    "hetero_secureboost": secureboost.train_hetero,
    "homo_secureboost": secureboost.train_homo,
}


def run(ctx: PartyContext, options: dict) -> None:
    options = dict(options)
    model = options.pop("model", None)
    if model not in TRAINERS:
        raise ConfigError(f"train: 'model' must be one of {sorted(TRAINERS)}, got {model!r}")
    ctx.state["trained"] = TRAINERS[model](ctx, options)
    ctx.events.emit(step="train", status="model saved", path=str(ctx.run_dir / "model.json"))
