"""isthmus: federated learning for data islands."""

import os

__version__ = "0.1.0"

# gRPC's core logs every failed TLS handshake at INFO to stderr, a dozen lines a second while it retries a
# peer whose certificate it cannot verify; the error isthmus raises names the cause once. Set before any
# module (ours, Ray's) imports grpc; an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
