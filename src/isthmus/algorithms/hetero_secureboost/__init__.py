"""Hetero SecureBoost (Cheng et al. 2019): the guest holds labels and the Paillier key, hosts build encrypted histograms."""
