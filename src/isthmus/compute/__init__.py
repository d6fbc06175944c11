"""A party's own compute backend: where the heavy per-row work of its side of a job runs.

Each party chooses its backend alone (``isthmus run --compute``, or the environment variable
``ISTHMUS_COMPUTE`` for every job of that machine); other parties neither know nor care, since
nothing about it crosses the wire. ``local`` (the default) is this machine's worker processes;
``ray://HOST:PORT`` is a Ray cluster the party runs (:mod:`isthmus.compute.ray_backend`, needs the
``ray`` extra). See docs/scale-out.md.
"""

from isthmus.compute.base import Compute, ComputeError, Pool, map_partitions
from isthmus.compute.local import LocalCompute
from isthmus.compute.select import ENV_VAR, connect, current, from_environment, use

__all__ = ["ENV_VAR", "Compute", "ComputeError", "LocalCompute", "Pool", "connect", "current", "from_environment",
           "map_partitions", "use"]
