"""Message tags of hetero_lr_sshe, in one place so the two roles cannot drift apart."""

HELLO = "sshe-lr/hello"  # both ways: own public key and feature count
CONTROL = "sshe-lr/control"  # guest -> host: batch, reveal
WEIGHT_SHARE = "sshe-lr/weight-share"  # both ways: [[my share of your weights]] under my key
SCORE_SHARE = "sshe-lr/score-share"  # both ways: [[X_mine @ share - r]] under your key
TRIG = "sshe-lr/trig"  # both ways: [[cos k b, sin k b]] of the sender's half of the terms, under its key
RESIDUAL_SHARE = "sshe-lr/residual-share"  # both ways: [[the receiver's half of the series (- y at the guest) - r]]
RESIDUAL = "sshe-lr/residual"  # both ways: [[my share of the residual]] under my key
GRADIENT_SHARE = "sshe-lr/gradient-share"  # both ways: [[X_mine.T @ share - r]] under your key
REVEAL = "sshe-lr/reveal"  # both ways, once: my share of your weights
PLACE = "sshe-lr/place"  # guest -> each host, once: lead or not, and the keys it encrypts under for the others
FOLD = "sshe-lr/fold"  # another host -> guest -> lead host: [[that host's share of z]] under the lead's key
SPREAD = "sshe-lr/spread"  # lead host -> guest -> each other host: [[the lead's share of e]] under that host's key
PRODUCT_SHARE = "sshe-lr/product-share"  # guest -> lead host: [[a0]] (and [[b0]]) of a product of two shared values (arith.py)
PRODUCT = "sshe-lr/product"  # lead host -> guest: [[a0 b1 + b0 a1 - r]] under the guest's key
