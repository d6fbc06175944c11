"""Message tags of the vertical linear protocol, in one place so roles cannot drift apart."""

PUBLIC_KEY = "hetero-linear/public-key"
#: guest -> arbiter: start, decrypt, decrypt-loss, sigmoid, softmax, done
ARBITER_CONTROL = "hetero-linear/arbiter-control"
MASKED = "hetero-linear/masked"
UNMASKED_RAW = "hetero-linear/unmasked-raw"
FEATURES = "hetero-linear/features"  # host -> guest: its feature count, which sets the smallest batch
CONTROL = "hetero-linear/control"  # guest -> hosts: what to do next
#: host -> guest: encrypted partial predictions of a batch (exact residual: its packed, disguised part and loss term)
PARTIAL = "hetero-linear/partial"
RESIDUAL = "hetero-linear/residual"  # guest -> hosts: encrypted residual of a batch
CROSS_REPLY = "hetero-linear/cross-reply"  # host -> guest: encrypted inner product for the loss
PARTNERS = "hetero-linear/partners"  # guest -> hosts: later hosts' [[u]] for the validation loss's cross terms
SCORES = "hetero-linear/scores"  # host -> guest: plaintext partial scores for prediction (after training only)
SIGMOID_REQUEST = "hetero-linear/sigmoid-request"  # guest -> arbiter: shuffled, packed scores
SIGMOID_REPLY = "hetero-linear/sigmoid-reply"  # arbiter -> guest: [[sigmoid]] and the softplus sum
SOFTMAX_REQUEST = "hetero-linear/softmax-request"  # guest -> arbiter: shuffled, packed gaps of disguised score rows
SOFTMAX_REPLY = "hetero-linear/softmax-reply"  # arbiter -> guest: [[softmax]] of those rows and the logsumexp sum
