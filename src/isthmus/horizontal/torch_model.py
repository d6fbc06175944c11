"""Any PyTorch ``nn.Module`` as a horizontal client (optional extra: ``pip install 'isthmus[torch]'``).

The user brings the module, a loss and an optimiser factory; the client exchanges the module's
trainable parameters (``module.parameters()``, in order) as float numpy arrays. Buffers such as batch
norm statistics stay local. Runs on the CPU unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from isthmus.errors import ConfigError
from isthmus.horizontal.client import Client, Config, EvaluateRes, FitRes, Parameters

try:
    import torch
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = None


class TorchClient(Client):
    """``module`` trained on ``(X, y)`` with ``loss_fn`` and ``optimizer_factory(module.parameters())``.

    ``metrics_fn(outputs, targets) -> dict`` adds evaluation metrics beyond the loss. Config keys
    ``epochs`` and ``proximal_mu`` (FedProx) override the constructor's values for one round.
    """

    def __init__(
        self,
        module: Any,
        loss_fn: Callable[[Any, Any], Any],
        optimizer_factory: Callable[[Iterable[Any]], Any],
        X: Any,
        y: Any,
        *,
        X_test: Any = None,
        y_test: Any = None,
        epochs: int = 1,
        batch_size: int = 32,
        metrics_fn: Callable[[Any, Any], dict[str, float]] | None = None,
        device: str = "cpu",
        seed: int = 0,
    ):
        if torch is None:
            raise ConfigError("TorchClient needs PyTorch: pip install 'isthmus[torch]'")
        self.module = module.to(device)
        self.loss_fn = loss_fn
        self.optimizer_factory = optimizer_factory
        self.train_data = (torch.as_tensor(X).to(device), torch.as_tensor(y).to(device))
        self.test_data = (
            None if X_test is None else (torch.as_tensor(X_test).to(device), torch.as_tensor(y_test).to(device))
        )
        self.epochs = epochs
        self.batch_size = batch_size
        self.metrics_fn = metrics_fn
        self.seed = seed

    def get_parameters(self) -> Parameters:
        return [p.detach().cpu().numpy().copy() for p in self.module.parameters()]

    def set_parameters(self, parameters: Parameters) -> None:
        with torch.no_grad():
            for target, value in zip(self.module.parameters(), parameters):
                target.copy_(torch.as_tensor(value, dtype=target.dtype))

    def fit(self, parameters: Parameters, config: Config) -> FitRes:
        self.set_parameters(parameters)
        start = [p.detach().clone() for p in self.module.parameters()]
        mu = float(config.get("proximal_mu", 0.0))
        optimizer = self.optimizer_factory(self.module.parameters())
        X, y = self.train_data
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(config.get("round", 0)))
        self.module.train()
        total, seen = 0.0, 0
        for _ in range(int(config.get("epochs", self.epochs))):
            for rows in torch.randperm(len(y), generator=generator).split(self.batch_size):
                optimizer.zero_grad()
                loss = self.loss_fn(self.module(X[rows]), y[rows])
                if mu:
                    loss = loss + 0.5 * mu * sum(((p - s) ** 2).sum() for p, s in zip(self.module.parameters(), start))
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
                seen += len(rows)
        return FitRes(self.get_parameters(), len(y), {"loss": total / max(seen, 1)})

    def evaluate(self, parameters: Parameters, config: Config) -> EvaluateRes | None:
        if self.test_data is None:
            return None
        self.set_parameters(parameters)
        X, y = self.test_data
        self.module.eval()
        with torch.no_grad():
            outputs = self.module(X)
            loss = float(self.loss_fn(outputs, y))
        metrics = self.metrics_fn(outputs, y) if self.metrics_fn else {}
        return EvaluateRes(loss, len(y), {k: float(v) for k, v in metrics.items()})
