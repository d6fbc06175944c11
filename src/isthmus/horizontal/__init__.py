"""Horizontal federated learning: same columns, different rows; only (securely aggregated) updates move."""

from isthmus.horizontal.aggregator import RoundRecord, TooFewClientsError, TrainingResult, run_aggregator
from isthmus.horizontal.client import Client, ClientContext, ClientFn, EvaluateRes, FitRes
from isthmus.horizontal.dp import DPConfig
from isthmus.horizontal.models import LinearClient, LinearModel
from isthmus.horizontal.participant import ClientOutcome, ClientTerms, run_client
from isthmus.horizontal.secure_sum import Keyring, SecAggConfig
from isthmus.horizontal.simulation import simulate
from isthmus.horizontal.strategy import STRATEGIES, FedAdam, FedAvg, FedProx, FedYogi, Strategy

__all__ = [
    "STRATEGIES",
    "Client",
    "ClientContext",
    "ClientFn",
    "ClientOutcome",
    "ClientTerms",
    "DPConfig",
    "EvaluateRes",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "FedYogi",
    "FitRes",
    "Keyring",
    "LinearClient",
    "LinearModel",
    "RoundRecord",
    "SecAggConfig",
    "Strategy",
    "TooFewClientsError",
    "TrainingResult",
    "run_aggregator",
    "run_client",
    "simulate",
]
