"""Vertical logistic regression without an arbiter (``hetero_lr_sshe``): secret-shared weights and scores,
Paillier under each party's own key for plaintext-feature x shared-value products, and the sigmoid
evaluated on shares through a Fourier series (for 3+ classes, softmax.py's softmax on shares). See
``protocol.py`` for one batch step by step."""
