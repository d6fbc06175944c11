"""hetero_nn: vertical split neural networks with a Paillier-protected interactive layer (FATE's construction)."""
