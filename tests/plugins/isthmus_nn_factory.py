"""A network factory as a party installs it (``network: {factory: "isthmus_nn_factory:build"}``).

``mismatched`` lists parties (threads of an in-process job are named after them) whose installed
version builds a wider hidden layer: what a client with another release of the package would build.
"""

import threading

import torch

mismatched: set[str] = set()


def build(input_shape, outputs):
    width = 24 if threading.current_thread().name in mismatched else 16
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(input_shape).prod()), width),
                               torch.nn.Tanh(), torch.nn.Linear(width, outputs))
