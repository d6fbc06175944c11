"""Any PyTorch ``nn.Module`` as a horizontal client (optional extra: ``pip install 'isthmus[torch]'``).

The user brings the module, a loss and an optimiser factory, and the data as arrays or as PyTorch
``Dataset``s (read through a ``DataLoader``, batch by batch; an ``IterableDataset`` such as
:class:`~isthmus.horizontal.torch_data.TableStream` streams, shuffling itself); the client exchanges the module's
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
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = None


def module_parameters(module: Any) -> Parameters:
    """A module's trainable parameters as numpy copies, in ``module.parameters()`` order."""
    return [p.detach().cpu().numpy().copy() for p in module.parameters()]


def load_parameters(module: Any, parameters: Parameters) -> None:
    """Overwrite a module's trainable parameters with ``parameters`` (same order and shapes)."""
    with torch.no_grad():
        for target, value in zip(module.parameters(), parameters, strict=True):
            target.copy_(torch.as_tensor(value, dtype=target.dtype))


class TorchClient(Client):
    """``module`` trained on ``(X, y)`` (or the Dataset ``train``) with ``loss_fn`` and
    ``optimizer_factory(module.parameters())``.

    ``metrics_fn(outputs, targets) -> dict`` adds evaluation metrics beyond the loss. Config keys
    ``epochs`` and ``proximal_mu`` (FedProx) override the constructor's values for one round.
    """

    def __init__(
        self,
        module: Any,
        loss_fn: Callable[[Any, Any], Any],
        optimizer_factory: Callable[[Iterable[Any]], Any],
        X: Any = None,
        y: Any = None,
        *,
        train: Any = None,
        test: Any = None,
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
        if (train is None) == (X is None):
            raise ConfigError("TorchClient takes its training rows either as X and y or as a Dataset (train=)")
        self.module = module.to(device)
        self.device = device
        self.loss_fn = loss_fn
        self.optimizer_factory = optimizer_factory
        self.train_data = train if train is not None else _tensors(X, y)
        self.test_data = test if test is not None or X_test is None else _tensors(X_test, y_test)
        self.epochs = epochs
        self.batch_size = batch_size
        self.metrics_fn = metrics_fn
        self.seed = seed

    def get_parameters(self) -> Parameters:
        return module_parameters(self.module)

    def set_parameters(self, parameters: Parameters) -> None:
        load_parameters(self.module, parameters)

    def fit(self, parameters: Parameters, config: Config) -> FitRes:
        self.set_parameters(parameters)
        start = [p.detach().clone() for p in self.module.parameters()]
        mu = float(config.get("proximal_mu", 0.0))
        optimizer = self.optimizer_factory(self.module.parameters())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(config.get("round", 0)))
        torch.manual_seed(self.seed * 1_000_003 + int(config.get("round", 0)))  # dropout masks
        streamed = isinstance(self.train_data, IterableDataset)  # shuffles itself; its length is what it yields
        batches = DataLoader(self.train_data, batch_size=self.batch_size, shuffle=not streamed,
                             generator=None if streamed else generator)
        self.module.train()
        total, seen = 0.0, 0
        epochs = int(config.get("epochs", self.epochs))
        for _ in range(epochs):
            for X, y in batches:
                X, y = X.to(self.device), y.to(self.device)
                optimizer.zero_grad()
                loss = self.loss_fn(self.module(X), y)
                if mu:
                    loss = loss + 0.5 * mu * sum(((p - s) ** 2).sum() for p, s in zip(self.module.parameters(), start))
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
        examples = seen // max(epochs, 1) if streamed else len(self.train_data)
        return FitRes(self.get_parameters(), examples, {"loss": total / max(seen, 1)})

    def evaluate(self, parameters: Parameters, config: Config) -> EvaluateRes | None:
        if self.test_data is None:
            return None
        self.set_parameters(parameters)
        self.module.eval()
        outputs, targets = [], []
        with torch.no_grad():
            for X, y in DataLoader(self.test_data, batch_size=max(self.batch_size, 1024)):
                outputs.append(self.module(X.to(self.device)))
                targets.append(y.to(self.device))
        outputs, targets = torch.cat(outputs), torch.cat(targets)
        loss = float(self.loss_fn(outputs, targets))
        metrics = self.metrics_fn(outputs, targets) if self.metrics_fn else {}
        return EvaluateRes(loss, len(targets), {k: float(v) for k, v in metrics.items()})


def _tensors(X: Any, y: Any) -> Any:
    return TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
