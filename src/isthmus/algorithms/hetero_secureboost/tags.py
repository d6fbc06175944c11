"""Message tags of vertical SecureBoost, in one place so guest and host cannot drift apart.

Training: the guest sends SETUP, the host answers HELLO (its bins per column); then COMMAND
messages, each ``{"op": ...}``: ``tree`` (gradients, sampled rows, sampled columns), ``level``
(partitions of the last level, nodes to build) answered by HISTOGRAMS, ``split`` answered by SPLITS,
and ``finish``. Prediction: PREDICT messages ``start`` / ``route`` / ``done``, answered by ROUTE.
"""

SETUP = "secureboost/setup"
HELLO = "secureboost/hello"
COMMAND = "secureboost/command"
HISTOGRAMS = "secureboost/histograms"
SPLITS = "secureboost/splits"
PREDICT = "secureboost/predict"
ROUTE = "secureboost/route"
SERVE = "secureboost/serve"  # guest -> hosts: {"op": "predict", "rows": ...} or {"op": "finish"} (joint scoring)
