"""The `train` step: the model named in the job, trained federatedly; each party stores its own part."""

from __future__ import annotations

from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import hetero_linear

TRAINERS = {
    "hetero_lr": hetero_linear.train_logistic,
    "hetero_linr": hetero_linear.train_linear,
}


def run(ctx: PartyContext, options: dict) -> None:
    options = dict(options)
    model = options.pop("model", None)
    if model not in TRAINERS:
        raise ConfigError(f"train: 'model' must be one of {sorted(TRAINERS)}, got {model!r}")
    ctx.state["trained"] = TRAINERS[model](ctx, options)
    ctx.events.emit(step="train", status="model saved", path=str(ctx.run_dir / "model.json"))
