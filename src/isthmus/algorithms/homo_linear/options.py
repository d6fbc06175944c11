"""The `train` options of homo_lr / homo_linr, which every party reads from the same job file.

A client holds the aggregator to its own copy of them (the DP settings, secure aggregation, the
quorum), so an aggregator cannot run the clients under weaker settings than the job says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from isthmus.algorithms.base import Seed
from isthmus.errors import ConfigError
from isthmus.horizontal import STRATEGIES, DPConfig, SecAggConfig, Strategy
from isthmus.options import Options


class DPOptions(Options):
    clip_norm: float = Field(gt=0)
    noise_multiplier: float = Field(ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)

    def config(self) -> DPConfig:
        return DPConfig(clip_norm=self.clip_norm, noise_multiplier=self.noise_multiplier, delta=self.delta)


class HorizontalOptions(Options):
    """What every horizontal algorithm's rounds share: strategy, secure aggregation, DP, dropouts."""

    rounds: int = Field(20, ge=1)
    strategy: Literal[tuple(STRATEGIES)] = "fedavg"  # type: ignore[valid-type]
    strategy_options: dict[str, float | int | bool] = {}  # e.g. proximal_mu (fedprox), eta (fedadam)
    secure_aggregation: bool = True
    dropout_tolerance: float = Field(0.3, ge=0, lt=1)
    min_clients: int = Field(2, ge=1)
    fraction_fit: float = Field(1.0, gt=0, le=1)
    dp: DPOptions | None = None
    round_timeout: float = Field(300.0, gt=0)
    seed: Seed = 0
    #: Fault injection for demos and tests: client -> the round in which it drops out.
    fail_after_round: dict[str, Annotated[int, Field(ge=1)]] = {}
    #: Keep each round's updates at the aggregator (set by the plan when the job measures contributions).
    keep_round_updates: bool = False
    #: Against hostile clients (isthmus.horizontal.robust): without secure aggregation, the coordinate-wise
    #: median or trimmed mean of the updates instead of their weighted mean ...
    robust: Literal["median", "trimmed_mean"] | None = None
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)  # of the updates, at each end (trimmed_mean)
    #: ... and, with or without it, every update clipped to this L2 norm (under secure aggregation by each
    #: client, and a longer mean update is not applied).
    update_clip: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _defences_fit_the_round(self) -> Self:
        if self.robust and self.secure_aggregation:
            raise ValueError("robust aggregation looks at every update: it needs secure_aggregation: false (under "
                             "secure aggregation, bound the updates with update_clip)")
        if (self.robust or self.update_clip) and self.dp:
            raise ValueError("robust and update_clip do not combine with dp, whose clip_norm already bounds updates")
        return self

    @model_validator(mode="after")
    def _strategy_takes_its_options(self) -> Self:
        try:
            self.make_strategy(None)  # an option the strategy does not take fails when the job loads
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def check_roster(self, clients: list[str]) -> None:
        """The job has enough clients for the quorum, and fault injection names only them."""
        if len(clients) < self.min_clients:
            raise ConfigError(f"min_clients is {self.min_clients} but the job has {len(clients)} clients")
        strangers = sorted(set(self.fail_after_round) - set(clients))
        if strangers:
            raise ConfigError(f"fail_after_round names {strangers}, which are not clients of the job")

    @property
    def secagg(self) -> SecAggConfig:
        return SecAggConfig(dropout_tolerance=float(self.dropout_tolerance))

    def make_strategy(self, evaluate_fn: Any) -> Strategy:
        try:
            return STRATEGIES[self.strategy](fraction_fit=float(self.fraction_fit), min_fit_clients=self.min_clients,
                                             evaluate_fn=evaluate_fn, seed=self.seed, **self.strategy_options)
        except TypeError as exc:
            raise ConfigError(f"strategy_options for {self.strategy}: {exc}") from None


class LinearModelOptions(HorizontalOptions):
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    alpha: float = Field(0.0, ge=0)  # L2: each client minimises mean loss + alpha/2 |w|^2, as in hetero jobs
