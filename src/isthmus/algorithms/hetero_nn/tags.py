"""Message tags of the hetero_nn protocol, in one place so roles cannot drift apart."""

CONTROL = "hetero-nn/control"  # guest -> host: start, batch, score, keep-best, fit-done, finish
SHAPE = "hetero-nn/shape"  # host -> guest: its bottom output width and (protected) its public key
ACTIVATIONS = "hetero-nn/activations"  # host -> guest: [[alpha]] (protected) or alpha (plain) of a batch
PROJECTION = "hetero-nn/projection"  # guest -> host: [[alpha W' + noise]] masked in Z_n
PROJECTION_REPLY = "hetero-nn/projection-reply"  # host -> guest: masked raw plaintexts plus alpha eps_acc
NOISE_SHARE = "hetero-nn/noise-share"  # host -> guest: [[eps_acc]], the host's share of W_A, and [[alpha]] by row
BACKWARD = "hetero-nn/backward"  # guest -> host: [[delta W_A^T]] and the masked [[alpha^T delta]] (or plain)
GRADIENT_REPLY = "hetero-nn/gradient-reply"  # host -> guest: masked raw gradient plus eps/lr
